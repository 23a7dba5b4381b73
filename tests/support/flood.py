"""A hostile hub-side client and the hub that takes a pole's calls, for flood tests and the
flood benchmark.

`Flood` sends what a buggy hub integration, or a long queue built up for a pole that was
offline, sends: malformed and near-valid commands on the pole's command topics and junk on
its ack topic (bad JSON, wrong fields, unknown alert ids, JSON nested thousands deep,
oversized bodies), QoS 1 like the hub's own, as fast as the broker takes them or at a
given rate. `CallTaker` notes when each alert arrives (CLOCK_MONOTONIC is shared by the
processes of one machine) and acknowledges it as the hub does.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import random
import threading
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from contract.link import TlsSection, make_client
from contract.payloads import Ack, Alert
from contract.topics import NodeTopics
from devkit.localbroker import LocalBroker
from provisioning.pki import HUB

NAMES = ["selftest", "reboot", "config.set", "clip.request", "telemetry.interval",
         "firmware.update", "no.such.command"]


def junk(topics: NodeTopics, rnd: random.Random, i: int) -> tuple[str, bytes]:
    """The i-th message of a flood: (topic, payload)."""
    kind = i % 10
    name = NAMES[i % len(NAMES)]
    issued = "2026-12-08T00:00:00Z"
    if kind == 0:
        return topics.cmd(name), b"[" * 15_000  # deep nesting under the size limit
    if kind == 1:
        return topics.cmd(name), rnd.randbytes(rnd.randint(1, 200))
    if kind == 2:
        return topics.cmd(name), b"x" * 20_000  # oversized
    if kind == 3:  # near-valid: a good id and time, a bad field
        return topics.cmd(name), json.dumps({"v": 1, "id": f"flood-{i}", "issued": issued,
                                             "delay_s": "soon", "interval_s": -1}).encode()
    if kind == 4:  # valid JSON, no id
        return topics.cmd(name), json.dumps({"v": 1, "junk": i}).encode()
    if kind in (5, 6):  # an ack for an alert this pole never raised
        ack = {"v": 1, "alert_id": str(uuid.UUID(int=rnd.getrandbits(128))), "by": "flood",
               "time": issued}
        return topics.ack, json.dumps(ack).encode()
    if kind == 7:
        return topics.ack, b'{"v": 1, "alert_id": ' + b"[" * 3000
    if kind == 8:
        return topics.ack, rnd.randbytes(rnd.randint(1, 100))
    return topics.cmd(name), json.dumps({"v": 1, "id": f"flood-{i}", "issued": issued,
                                         "extra": "x" * rnd.randint(0, 2000)}).encode()


class Flood:
    """Sends `count` flood messages to `node` at host:port (with a hub consumer's `tls`, or
    plain MQTT), as fast as the broker takes them or at `rate_per_s`, on a thread."""

    def __init__(self, host: str, port: int, tls: TlsSection | None, node: str, count: int,
                 rate_per_s: float | None = None, seed: int = 1) -> None:
        self.count, self.rate_per_s = count, rate_per_s
        self.topics = NodeTopics(node)
        self.sent = 0
        self._rnd = random.Random(seed)
        self.client = make_client("", tls)
        self.client.max_inflight_messages_set(200)
        self.client.max_queued_messages_set(0)
        connected = threading.Event()
        self.client.on_connect = lambda *_: connected.set()
        self.client.connect(host, port)
        self.client.loop_start()
        assert connected.wait(15), "the flooding client could not connect"
        self._thread = threading.Thread(target=self._run, name="flood", daemon=True)
        self._stop = threading.Event()
        self.started_at = 0.0
        self.done_at = 0.0

    def start(self) -> Flood:
        self.started_at = time.monotonic()
        self._thread.start()
        return self

    def _run(self) -> None:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = self.topics.response
        info = None
        for i in range(self.count):
            if self._stop.is_set():
                break
            if self.rate_per_s is not None:
                ahead = self.started_at + i / self.rate_per_s - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            topic, payload = junk(self.topics, self._rnd, i)
            info = self.client.publish(topic, payload, qos=1, properties=props)
            self.sent += 1
            if self.rate_per_s is None and i % 500 == 499:
                info.wait_for_publish(30)  # as fast as the broker takes them, no faster
        if info is not None:
            info.wait_for_publish(60)
        self.done_at = time.monotonic()

    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        """Send no more (what was sent is still waited for)."""
        self._stop.set()

    def join(self, timeout_s: float = 300) -> None:
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), f"the flood stalled after {self.sent} messages"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class FloodProcess:
    """A `Flood` in a process of its own, from a hub consumer's certificate on `broker`, so
    its sending never takes the measuring process's time (the GIL) from the call taker."""

    def __init__(self, broker: LocalBroker, node: str, count: int,
                 rate_per_s: float | None = None) -> None:
        self._broker = broker
        self._tls = broker.tls(HUB)
        ctx = mp.get_context("spawn")
        self._stop, self._sent = ctx.Event(), ctx.Value("q", 0)
        self._proc = ctx.Process(target=_flood_main, name="flood", daemon=True, args=(
            broker.host, broker.port, self._tls, node, count, rate_per_s, self._stop,
            self._sent))
        self.started_at = self.done_at = 0.0

    def start(self) -> FloodProcess:
        self.started_at = time.monotonic()
        self._proc.start()
        return self

    @property
    def sent(self) -> int:
        return int(self._sent.value)

    def running(self) -> bool:
        return self._proc.is_alive()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout_s: float = 300) -> None:
        self._proc.join(timeout_s)
        self.done_at = time.monotonic()
        assert self._proc.exitcode == 0, f"the flood failed after {self.sent} messages"

    def close(self) -> None:
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()
        if self._tls is not None:
            self._broker.release(self._tls)


def _flood_main(host: str, port: int, tls: TlsSection | None, node: str, count: int,
                rate_per_s: float | None, stop: Any, sent: Any) -> None:
    flood = Flood(host, port, tls, node, count, rate_per_s).start()
    while flood.running():
        if stop.is_set():
            flood.stop()
        sent.value = flood.sent
        time.sleep(0.05)
    flood.join()
    sent.value = flood.sent
    flood.close()


class CallTaker:
    """The hub's call desk: notes each alert's first arrival by seq and acks every copy."""

    def __init__(self, broker: LocalBroker, node: str) -> None:
        self.topics = NodeTopics(node)
        self.arrived: dict[int, float] = {}
        self.copies = 0
        self.responses = 0
        self._cond = threading.Condition()
        self._broker = broker
        self._tls = broker.tls(HUB) if broker.secure else None
        self.client = broker.client(self._tls) if self._tls else broker.client("hub-calls")
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_connect = lambda c, *_: c.subscribe(
            [(self.topics.alert, 1), (self.topics.response + "/#", 0),
             (self.topics.response, 0)])
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert subscribed.wait(15), "the call taker could not subscribe"

    def _on_message(self, client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        t = time.monotonic()
        if msg.topic != self.topics.alert:
            with self._cond:
                self.responses += 1
            return
        alert = Alert.model_validate_json(msg.payload)
        with self._cond:
            self.copies += 1
            self.arrived.setdefault(alert.seq, t)
            self._cond.notify_all()
        client.publish(self.topics.ack, Ack(alert_id=alert.id, by="hub", time=alert.time)
                       .to_bytes(), qos=1)

    def wait(self, seq: int, timeout_s: float = 60.0) -> float | None:
        with self._cond:
            self._cond.wait_for(lambda: seq in self.arrived, timeout_s)
            return self.arrived.get(seq)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        if self._tls is not None:
            self._broker.release(self._tls)


def rss_kib(pid: int) -> int:
    """A process's resident set, from /proc."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")
