"""The hub's side of the test broker: a listener that keeps what arrives on a topic pattern,
the command desk that sends commands and keeps their answers, and the hub asking for clips.
Each is a hub consumer with a certificate of its own (`broker.client(HUB)`): the hub's
broker makes a client's id its certificate's name, so consumers sharing one would fight."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devkit.localbroker import LocalBroker
from provisioning.pki import HUB
from tests.support.node import NODE_ID
from tests.support.waiting import wait_for


def iso(t: float) -> str:
    """A unix time as the ISO 8601 UTC text a hub request carries."""
    return datetime.fromtimestamp(t, UTC).isoformat()


class Listener:
    """An MQTT subscriber (a hub consumer of its own, unless `identity` names another
    certificate) that keeps every message on `pattern`, in arrival order, from the moment it
    is made: it returns once the broker has confirmed the subscription."""

    def __init__(self, broker: LocalBroker, pattern: str, identity: str = HUB) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self._broker, self._tls = broker, broker.tls(identity)
        self.client = broker.client(self._tls)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe(pattern, qos=1)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        # Without this, a message sent right after (a press, a command) can beat the
        # SUBSCRIBE on a loaded machine and never arrive.
        assert subscribed.wait(15), f"the broker did not confirm the subscription to {pattern}"

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def payloads(self) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(p) for _, p in self.messages]

    def close(self) -> None:
        self.client.disconnect()  # first: the loop then ends at once, not at its next wake-up
        self.client.loop_stop()
        self._broker.release(self._tls)  # no session left: its name may serve another


REPLY = f"poles/{NODE_ID}/response/desk"


class Desk:
    """The hub's command desk: sends commands, keeps every answer with its correlation."""

    def __init__(self, broker: LocalBroker) -> None:
        self.answers: list[tuple[str, dict[str, Any], bytes | None]] = []
        self._lock = threading.Lock()
        self._n = 0
        self._broker, self._tls = broker, broker.tls(HUB)
        self.client = broker.client(self._tls)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_connect = lambda c, *_: c.subscribe(f"poles/{NODE_ID}/response/#", qos=1)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert subscribed.wait(10)

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.answers.append((msg.topic, json.loads(msg.payload),
                                 getattr(msg.properties, "CorrelationData", None)))

    def send(self, name: str, body: dict[str, Any] | bytes, *, cid: str | None = None,
             correlation: bytes | None = None) -> str:
        if cid is None:
            self._n += 1
            cid = f"c-{self._n}"
        payload = body if isinstance(body, bytes) else json.dumps(
            {"v": 1, "id": cid, "issued": datetime.now(UTC).isoformat(), **body}).encode()
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = REPLY
        props.CorrelationData = correlation or cid.encode()
        self.client.publish(f"poles/{NODE_ID}/cmd/{name}", payload, qos=1, properties=props)
        return cid

    def of(self, cid: str) -> list[dict[str, Any]]:
        with self._lock:
            return [a for _, a, _ in self.answers if a["id"] == cid]

    def final(self, cid: str, timeout: float = 30) -> dict[str, Any]:
        """The first answer to `cid` that is not `accepted`."""
        def settled() -> dict[str, Any] | None:
            return next((a for a in self.of(cid) if a["status"] != "accepted"), None)

        answer: dict[str, Any] = wait_for(settled, timeout=timeout, what=f"the answer to {cid}")
        return answer

    def listening(self) -> None:
        """Wait until the node takes commands (one sent before it subscribed reaches no one)."""
        def answered() -> bool:
            cid = self.send("selftest", {})
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline and not self.of(cid):
                time.sleep(0.02)
            return bool(self.of(cid))

        wait_for(answered, timeout=30, what="the node listening for commands")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self._broker.release(self._tls)


class Hub:
    """The hub's side: sends commands, collects responses with their correlation data."""

    def __init__(self, broker: LocalBroker) -> None:
        self.responses: list[tuple[str, dict[str, Any], bytes | None]] = []
        self._lock = threading.Lock()
        self._broker, self._tls = broker, broker.tls(HUB)
        self.client = broker.client(self._tls)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_connect = lambda c, *_: c.subscribe(f"poles/{NODE_ID}/#", qos=1)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert subscribed.wait(5)

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if not msg.topic.startswith(f"poles/{NODE_ID}/response"):
            return
        correlation = getattr(msg.properties, "CorrelationData", None)
        with self._lock:
            self.responses.append((msg.topic, json.loads(msg.payload), correlation))

    def send(self, payload: bytes, *, response_topic: str | None = None,
             correlation: bytes | None = None, name: str = "clip.request") -> None:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        if response_topic:
            props.ResponseTopic = response_topic
        if correlation:
            props.CorrelationData = correlation
        self.client.publish(f"poles/{NODE_ID}/cmd/{name}", payload, qos=1, properties=props)

    def answers(self, request_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for _, r, _ in self.responses if r["id"] == request_id]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self._broker.release(self._tls)
