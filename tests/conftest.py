"""Shared fixtures: a real Mosquitto per test, a contract tap that validates every message
the node publishes against docs/mqtt-api.asyncapi.yaml, and node processes with simulated
pins that tests press through the pin simulator socket."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import paho.mqtt.client as mqtt
import pytest
import yaml

from contract import topics
from devkit.localbroker import LocalBroker
from provisioning.pki import HUB
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[1]
ASYNCAPI = yaml.safe_load((ROOT / "docs" / "mqtt-api.asyncapi.yaml").read_text())
NODE_ID = "test-0001"
BUTTON, LED, TAMPER = 17, 27, 22


class ContractTap:
    """Subscribes to everything as the hub and checks each message on a node's topics, in
    both directions, against the AsyncAPI document: a payload its channel does not allow,
    or a topic under `poles/<node>/` that no channel describes, fails the test that caused
    it, unless the test said it sends such input on purpose (allow_invalid)."""

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
        self.client = broker.client(HUB)
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


class Listener:
    """An MQTT subscriber (the hub, unless `identity` names another certificate) that keeps
    every message on `pattern`, in arrival order, from the moment it is made: it returns
    once the broker has confirmed the subscription."""

    def __init__(self, broker: LocalBroker, pattern: str, identity: str = HUB) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = broker.client(identity)
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


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """The hub's reference broker (hub/broker/): mutual TLS and the per-pole ACL."""
    b = LocalBroker(tmp_path / "broker", secure=True)
    b.start()
    tap = ContractTap(b)
    b.tap = tap  # type: ignore[attr-defined]
    yield b
    tap.close()
    b.close()
    assert not tap.errors, "messages the AsyncAPI document does not allow:\n" + (
        "\n".join(tap.errors[:10])
    )


def node_config(tmp_path: Path, broker: LocalBroker, *, node_id: str = NODE_ID,
                certificate: str | None = None, **timings: float) -> Path:
    """A node's config for `broker`. On a secure broker the node gets `hub.tls: {}` and a
    certificate for `certificate` (default: its own id) in `<data_dir>/tls/`."""
    hub: dict[str, Any] = {"host": broker.host, "port": broker.port, "keepalive_s": 3,
                           "reconnect_min_s": 0.1, "reconnect_max_s": 1.0}
    if broker.secure:
        broker.node_tls_dir(certificate or node_id, tmp_path / "data")
        hub["tls"] = {}
    cfg = {
        "node": {"id": node_id, "site": "Test pole, Kozyatyn",
                 "location": {"lat": 49.71, "lon": 28.83, "description": "Station square"}},
        "hub": hub,
        "gpio": {"pin_factory": "mock", "simulator_socket": str(tmp_path / "pins.sock"),
                 "call_button": {"pin": BUTTON}, "call_led": {"pin": LED},
                 "inputs": [{"name": "tamper", "pin": TAMPER}]},
        "timings": {"debounce_ms": 20, "ack_timeout_s": 5, "ack_display_s": 3,
                    "heartbeat_s": 1, **timings},
        "data_dir": str(tmp_path / "data"),
    }
    path = tmp_path / "node.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


class NodeProcess:
    """A real `edge-node run` process; its pins are driven through the simulator socket."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.cfg = yaml.safe_load(config.read_text())
        self.socket = Path(self.cfg["gpio"]["simulator_socket"])
        self.log_path = config.parent / "node.log"
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.pins: Any = None

    def start(self) -> NodeProcess:
        from drivers.gpio import PinSimulatorClient

        self.socket.unlink(missing_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "--log-level", "DEBUG", "run",
             "--config", str(self.config)],
            stdout=log, stderr=log, env={**os.environ, **(self.env or {})},
        )
        wait_for(lambda: self.socket.exists() or self.proc.poll() is not None,  # type: ignore[union-attr]
                 what="the node's pin simulator socket")
        assert self.proc.poll() is None, f"node exited at start:\n{self.log()}"
        self.pins = PinSimulatorClient(str(self.socket))
        return self

    def press(self, hold_s: float = 0.05, bounce: bool = True) -> None:
        self.pins.press(BUTTON, hold_s=hold_s, bounce=bounce)

    def led(self) -> int:
        return int(self.pins.read(LED))

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._close_client()

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close_client()
        return self.proc.returncode

    def _close_client(self) -> None:
        if self.pins is not None:
            self.pins.close()
            self.pins = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def telemetry(broker: LocalBroker) -> Iterator[Listener]:
    """Every heartbeat the test node publishes."""
    listener = Listener(broker, f"poles/{NODE_ID}/telemetry")
    yield listener
    listener.close()


@pytest.fixture
def systemd_watchdog(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nodes started by the test run as under systemd with WatchdogSec=2: they check their
    health, a config change on trial and the installer's files every second (half the
    watchdog period), instead of every 5 s as without a watchdog."""
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")


@pytest.fixture
def start_node(tmp_path: Path, broker: LocalBroker) -> Iterator[Callable[..., NodeProcess]]:
    nodes: list[NodeProcess] = []

    def start(config: Path | None = None, env: dict[str, str] | None = None,
              **timings: float) -> NodeProcess:
        node = NodeProcess(config or node_config(tmp_path, broker, **timings), env).start()
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        node.stop()
