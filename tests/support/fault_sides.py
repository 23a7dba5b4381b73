"""The two sides of an uplink fault scenario: the hub, on a link no fault touches, keeping
every alert, heartbeat and event of the node in arrival order and acking every alert; and the
pole, a real node process (under `ip netns exec` where the scenario needs a namespace) whose
outbox and log are read to judge it."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from contract.payloads import Ack
from contract.topics import NodeTopics
from devkit.localbroker import LocalBroker
from edge import clock
from provisioning.pki import HUB
from tests.support.node import NODE_ID, NodeProcess
from tests.support.waiting import wait_for

TOPICS = NodeTopics(NODE_ID)
PRESS_GAP_S = 0.2  # between the end of a press and the next: a person's fastest


# --- the hub side ---

@dataclass(frozen=True)
class Arrival:
    kind: str  # alert | telemetry | event
    key: str  # what dedupes it: alert id, heartbeat time, event seq
    order: float  # what must increase within the kind: alert seq, heartbeat time, event seq
    seq: int | None = None


class HubSide:
    """The hub, as the fault tests need it: a persistent session with a hub consumer's
    certificate of its own (its client id picks it, so every reconnect resumes the session),
    over a link no fault touches, that keeps every alert, heartbeat and event of the node
    in arrival order and acks every alert it receives, re-deliveries too, as the real hub
    does (the node re-sends only while it lacks our ack)."""

    def __init__(self, broker: LocalBroker) -> None:
        self.arrivals: list[Arrival] = []
        self.acks_sent = 0
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._broker, self._tls = broker, broker.tls(HUB)
        c = broker.client(self._tls, client_id=f"fault-hub-{os.getpid()}")
        c.reconnect_delay_set(1, 1)
        c.on_connect = self._on_connect
        c.on_subscribe = lambda *_: self._ready.set()
        c.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600  # alerts sent while we reconnect are kept for us
        c.connect(broker.host, broker.port, keepalive=10, clean_start=False, properties=props)
        c.loop_start()
        self._client = c
        assert self._ready.wait(15), "the hub side could not subscribe"

    def _on_connect(self, c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        if not reason.is_failure:
            c.subscribe([(TOPICS.alert, 1), (TOPICS.telemetry, 1), (TOPICS.event, 1)])

    def _on_message(self, c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        data = json.loads(msg.payload)
        if msg.topic == TOPICS.alert:
            arrival = Arrival("alert", data["id"], data["seq"], data["seq"])
            ack = Ack(alert_id=data["id"], by="fault-hub", time=clock.now())
            c.publish(TOPICS.ack, ack.to_bytes(), qos=1)
            with self._lock:
                self.acks_sent += 1
        elif msg.topic == TOPICS.telemetry:
            sent = datetime.fromisoformat(data["time"]).timestamp()
            arrival = Arrival("telemetry", data["time"], sent)
        elif "seq" in data:
            arrival = Arrival("event", str(data["seq"]), data["seq"], data["seq"])
        else:  # events without a per-node seq cannot be ordered; dedupe them only
            arrival = Arrival("event", f"{data['id']}/{data.get('phase')}", float("nan"))
        with self._lock:
            self.arrivals.append(arrival)

    def seen(self, kind: str) -> list[Arrival]:
        with self._lock:
            return [a for a in self.arrivals if a.kind == kind]

    def alert_ids(self) -> set[str]:
        return {a.key for a in self.seen("alert")}

    def close(self) -> None:
        props = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 0
        self._client.disconnect(properties=props)
        self._client.loop_stop()
        self._broker.release(self._tls)  # its session ended with it


# --- the pole ---

class WrappedNode(NodeProcess):
    """NodeProcess, started under a command prefix (`ip netns exec NS`)."""

    def __init__(self, config: Path, wrap: list[str]) -> None:
        super().__init__(config)
        self.wrap = wrap

    def start(self) -> WrappedNode:
        import subprocess

        from devkit.simulators.gpio import PinSimulatorClient

        self.socket.unlink(missing_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [*self.wrap, sys.executable, "-m", "edge.cli", "--log-level", "DEBUG", "run",
             "--config", str(self.config)], stdout=log, stderr=log,
        )
        wait_for(lambda: self.socket.exists() or self.proc.poll() is not None,  # type: ignore[union-attr]
                 what="the node's pin simulator socket")
        assert self.proc.poll() is None, f"node exited at start:\n{self.log()}"
        self.pins = PinSimulatorClient(str(self.socket))
        return self


@dataclass(frozen=True)
class Stored:
    seq: int
    id: str
    acked_at: float | None


class Pole:
    """The node under test: one config and data dir, (re)started as a scenario likes."""

    def __init__(self, config: Path, wrap: list[str] | None = None) -> None:
        self.config = config
        self.wrap = wrap or []
        self.data = Path(NodeProcess(config).cfg["data_dir"])
        self.log_path = config.parent / "node.log"
        self.node: NodeProcess | None = None
        self.pressed = 0
        self.expected = 0  # alerts that must be in the outbox by now
        self.kills = 0
        self._log_from = 0  # where the running process's log begins
        self._last_press = 0.0

    def start(self) -> None:
        self._log_from = self.log_path.stat().st_size if self.log_path.exists() else 0
        node = WrappedNode(self.config, self.wrap) if self.wrap else NodeProcess(self.config)
        self.node = node.start()

    def press(self) -> None:
        """One press, at least PRESS_GAP_S after the last: sooner, the button's debounce
        rightly takes it for bounce of the last one."""
        assert self.node is not None
        time.sleep(max(0.0, self._last_press + PRESS_GAP_S - time.monotonic()))
        self.node.press()
        self._last_press = time.monotonic()
        self.pressed += 1
        self.expected += 1

    def presses(self, n: int, over_s: float = 0.0) -> None:
        """n presses, spread evenly over `over_s` (else a quarter second apart)."""
        gap = over_s / n if over_s else 0.25
        for _ in range(n):
            self.press()
            time.sleep(gap)

    def kill9(self) -> None:
        assert self.node is not None
        self.node.kill9()
        self.kills += 1
        self.expected = len(self.rows())  # a press the node had not taken yet is not a call

    def stop(self) -> None:
        if self.node is not None:
            self.node.stop()

    def rows(self) -> list[Stored]:
        path = self.data / "outbox.sqlite"
        if not path.exists():
            return []
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return [Stored(*r) for r in db.execute(
                "SELECT seq, id, acked_at FROM alerts ORDER BY seq").fetchall()]
        except sqlite3.OperationalError:
            return []  # the node has not made its table yet
        finally:
            db.close()

    def log(self, *, all_runs: bool = True) -> str:
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as f:
            f.seek(0 if all_runs else self._log_from)
            return f.read().decode(errors="replace")

    def connects(self) -> int:
        """Connections made to the broker, by every run of the node so far."""
        return self.log().count("connected to hub")

    def linked(self) -> bool:
        """Whether the running node's last word about its link is that it is connected."""
        log = self.log(all_runs=False)
        return log.rfind("connected to hub") > log.rfind("lost hub link")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])
