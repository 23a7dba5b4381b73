"""The contract tap: every message on a node's topics checked against the AsyncAPI document
(docs/mqtt-api.asyncapi.yaml), as the `broker` fixture does for each test."""

from __future__ import annotations

import json
import re
import threading
from typing import Any

import jsonschema
import paho.mqtt.client as mqtt
import yaml

from contract import topics
from devkit.localbroker import LocalBroker
from provisioning.pki import HUB
from tests.support.paths import ROOT

ASYNCAPI = yaml.safe_load((ROOT / "docs" / "mqtt-api.asyncapi.yaml").read_text())


class ContractTap:
    """Subscribes to everything as a hub consumer of its own (beside the test's) and checks
    each message on a node's topics, in both directions, against the AsyncAPI document: a
    payload its channel does not allow, or a topic under `poles/<node>/` that no channel
    describes, fails the test that caused it, unless the test said it sends such input on
    purpose (allow_invalid)."""

    def __init__(self, broker: LocalBroker) -> None:
        self.checked: dict[str, int] = {}
        self.errors: list[str] = []
        self.allowed: list[str] = []  # invalid messages a test announced, for its asserts
        self._lock = threading.Lock()
        self._allow: list[re.Pattern[str]] = []
        self._channels: list[tuple[re.Pattern[str], str, list[dict[str, Any]]]] = []
        for name, channel in ASYNCAPI["channels"].items():
            # every {parameter} of an address is one topic level
            parts = re.split(r"\{[^}/]+\}", channel["address"])
            address = "[^/]+".join(re.escape(part) for part in parts)
            schemas = []
            for message in channel["messages"].values():
                ref = message["$ref"].split("/")[-1]
                schema = dict(ASYNCAPI["components"]["messages"][ref]["payload"])
                schema["components"] = ASYNCAPI["components"]
                schemas.append(schema)
            self._channels.append((re.compile(f"^{address}$"), name, schemas))
        self._broker, self._tls = broker, broker.tls(HUB)
        self.client = broker.client(self._tls)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe(f"{topics.ROOT}/#", qos=1)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def allow_invalid(self, topic_regex: str) -> None:
        """Messages on topics matching `topic_regex` (whole topic) may break the contract:
        the test publishes malformed input there on purpose."""
        with self._lock:
            self._allow.append(re.compile(topic_regex))

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            error = self._check(msg.topic, bytes(msg.payload))
        except Exception as e:  # an exception here would end the tap's thread, unnoticed
            error = f"the tap could not check it: {e!r}"
        if error is None:
            return
        with self._lock:
            allowed = any(p.fullmatch(msg.topic) for p in self._allow)
            (self.allowed if allowed else self.errors).append(f"{msg.topic}: {error}")

    def _check(self, topic: str, payload: bytes) -> str | None:
        for pattern, name, schemas in self._channels:
            if not pattern.match(topic):
                continue
            with self._lock:
                self.checked[name] = self.checked.get(name, 0) + 1
            try:
                data = json.loads(payload)
            except (ValueError, RecursionError) as e:  # b'{"a":' * 5000 nests too deep
                return f"not JSON ({type(e).__name__}: {str(e)[:80]})"
            first = ""
            for schema in schemas:
                try:
                    jsonschema.validate(data, schema)
                    return None
                except jsonschema.ValidationError as e:
                    first = first or str(e).splitlines()[0]
            return first
        if len(topic.split("/")) >= 3:  # poles/<node>/...: the document must describe it
            return "the document does not describe this topic"
        return None

    def close(self) -> None:
        self.client.disconnect()  # first: the loop then ends at once, not at its next wake-up
        self.client.loop_stop()
        self._broker.release(self._tls)
