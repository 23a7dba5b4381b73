"""Simulated poles for the fleet benchmark: many light MQTT 5 clients in one asyncio loop.

Each `Pole` behaves on the wire like a node's uplink (edge/uplink/client.py): its own client
certificate, clean_start False with a session expiry, a retained `online` status and an
`offline` last will, subscriptions to its own ack and command topics, heartbeats at QoS 0,
alerts at QoS 1 kept until the broker's PUBACK and re-sent (DUP) after a reconnect, and
reconnects paced by drivers/backoff.py. It is a few hundred bytes of state and three
coroutines, not a thread, so one process carries hundreds of them; `run_poles` is the
entry point of such a process, driven by the benchmark over a pipe.

Only the packets a node uses are encoded: CONNECT, PUBLISH, PUBACK, SUBSCRIBE, PINGREQ,
DISCONNECT out; CONNACK, SUBACK, PUBLISH, PUBACK, PINGRESP, DISCONNECT in.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import ssl
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import Any

from contract.ids import uuid7
from contract.payloads import (
    Ack,
    Alert,
    AlertKind,
    Heartbeat,
    LinkStats,
    Location,
    OutboxStats,
    Status,
)
from contract.pole import InputStats
from contract.topics import NodeTopics
from drivers.backoff import Backoff

SESSION_EXPIRY_S = 24 * 3600  # as the node (edge/uplink/client.py)
TIMEOUT_S = 10.0  # TCP + TLS + CONNACK, as paho's connect timeout would allow
SITE = "Fleet bench"
LOCATION = Location(lat=46.6354, lon=32.6169, description="simulated pole")

CONNACK, PUBLISH, PUBACK, SUBACK, PINGRESP, DISCONNECT = 2, 3, 4, 9, 13, 14
PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"


class ProtocolError(Exception):
    """The broker answered something a node would treat as a failed connection."""


# --- MQTT 5 encoding: only what a node sends ---


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return len(b).to_bytes(2, "big") + b


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _varint(len(body)) + body


def connect_packet(client_id: str, keepalive_s: int, will_topic: str, will: bytes) -> bytes:
    flags = 0x04 | 0x08 | 0x20  # will, will QoS 1, will retained; clean start off
    props = b"\x11" + SESSION_EXPIRY_S.to_bytes(4, "big")
    head = (_string("MQTT") + b"\x05" + bytes([flags]) + keepalive_s.to_bytes(2, "big")
            + _varint(len(props)) + props)
    return _packet(0x10, head + _string(client_id) + b"\x00" + _string(will_topic) + _string(will))


def publish_packet(topic: str, payload: bytes, qos: int, pid: int = 0, *, retain: bool = False,
                   dup: bool = False) -> bytes:
    first = 0x30 | (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0)
    body = _string(topic) + (pid.to_bytes(2, "big") if qos else b"") + b"\x00" + payload
    return _packet(first, body)


def subscribe_packet(pid: int, filters: list[str]) -> bytes:
    body = pid.to_bytes(2, "big") + b"\x00" + b"".join(_string(f) + b"\x01" for f in filters)
    return _packet(0x82, body)


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


async def read_packet(reader: asyncio.StreamReader) -> tuple[int, int, bytes]:
    """(packet type, flags, body) of the next packet; IncompleteReadError at EOF."""
    first = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    while True:
        b = (await reader.readexactly(1))[0]
        length |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
    return first >> 4, first & 0x0F, await reader.readexactly(length)


def parse_publish(flags: int, body: bytes) -> tuple[str, int, bytes]:
    """(topic, packet id or 0, payload) of an incoming PUBLISH."""
    n = int.from_bytes(body[:2], "big")
    topic = body[2:2 + n].decode()
    i = 2 + n
    pid = 0
    if (flags >> 1) & 3:
        pid = int.from_bytes(body[i:i + 2], "big")
        i += 2
    props, i = _read_varint(body, i)
    return topic, pid, body[i + props:]


# --- one simulated pole ---


@dataclass
class PoleIdentity:
    node_id: str
    ca: str | None = None  # None: plaintext (a broker on loopback)
    cert: str | None = None
    key: str | None = None


@dataclass
class SentAlert:
    id: str
    phase: str
    raised: float  # monotonic
    ack_rtt: float | None = None  # raised → hub ack at this pole, seconds


@dataclass
class Pole:
    """One simulated node: what it sends, when, and how it comes back after a loss."""

    ident: PoleIdentity
    host: str
    port: int
    server_hostname: str | None
    keepalive_s: int
    heartbeat_s: float
    backoff: Backoff
    topics: NodeTopics = field(init=False)
    subscribed: bool = False
    connected: bool = False
    links: list[tuple[float, bool]] = field(default_factory=list)  # (monotonic, subscribed?)
    alerts: dict[str, SentAlert] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    connects: int = 0
    disconnects: int = 0
    _ctx: ssl.SSLContext | None = None
    _writer: asyncio.StreamWriter | None = None
    _inflight: dict[int, bytes] = field(default_factory=dict)  # pid → PUBLISH, until PUBACK
    _queued: list[tuple[str, bytes]] = field(default_factory=list)  # QoS 1 raised while down
    _pid: int = 0
    _sub_pid: int = -1
    _seq: int = 0
    _last_sent: float = 0.0
    _boot: str = field(default_factory=lambda: os.urandom(6).hex())
    _started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.topics = NodeTopics(self.ident.node_id)
        if self.ident.ca is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.load_verify_locations(self.ident.ca)
            ctx.load_cert_chain(str(self.ident.cert), str(self.ident.key))
            ctx.check_hostname = self.server_hostname is not None
            self._ctx = ctx

    # --- what the pole publishes ---

    def _status(self, state: str, reason: str = "") -> bytes:
        return Status(node=self.ident.node_id, state=state,  # type: ignore[arg-type]
                      time=datetime.now(UTC), boot=self._boot, version="fleet-bench",
                      site=SITE, reason=reason).to_bytes()

    def heartbeat(self) -> bytes:
        return Heartbeat(
            node=self.ident.node_id, time=datetime.now(UTC),
            uptime_s=round(time.monotonic() - self._started, 1),
            outbox=OutboxStats(pending=len(self._queued) + len(self._inflight), unacked=sum(
                1 for a in self.alerts.values() if a.ack_rtt is None)),
            link=LinkStats(connects=self.connects, disconnects=self.disconnects,
                           connected_since=None, refused_connects=self.errors["refused"],
                           refused_publishes=self.errors["refused publish"],
                           refused_subscriptions=self.errors["refused subscription"]),
            inputs={"tamper": InputStats(active=False, changes=0)},
            counters={"presses": self._seq},
        ).to_bytes()

    def raise_alert(self, phase: str) -> None:
        """A citizen pressed the button: the alert goes out now, or on the next connect."""
        self._seq += 1
        alert = Alert(id=uuid7(), seq=self._seq, node=self.ident.node_id, kind=AlertKind.CALL,
                      source="call_button", time=datetime.now(UTC), clock_synced=True,
                      site=SITE, location=LOCATION)
        self.alerts[alert.id] = SentAlert(alert.id, phase, time.monotonic())
        self._publish_qos1(self.topics.alert, alert.to_bytes())

    def _publish_qos1(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        if self._writer is None:
            self._queued.append((topic, payload))
            return
        self._pid = self._pid % 65535 + 1
        packet = publish_packet(topic, payload, 1, self._pid, retain=retain)
        self._inflight[self._pid] = packet
        self._send(packet)

    def _send(self, data: bytes) -> None:
        if self._writer is not None:
            self._writer.write(data)
            self._last_sent = time.monotonic()

    # --- the link ---

    async def run(self) -> None:
        """Connect, serve, and after any loss wait the backoff and connect again; forever."""
        beats = asyncio.create_task(self._beats())
        try:
            while True:
                try:
                    await self._session()
                except ProtocolError as e:
                    self.errors[str(e)] += 1
                except (OSError, EOFError, TimeoutError, asyncio.IncompleteReadError) as e:
                    cause = "closed by the broker" if isinstance(e, asyncio.IncompleteReadError) \
                        else type(e).__name__
                    self.errors[f"{'link lost' if self.connected else 'attempt'}: {cause}"] += 1
                finally:
                    self._lost()
                await asyncio.sleep(self.backoff.next())
        finally:
            beats.cancel()

    async def _session(self) -> None:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(
            self.host, self.port, ssl=self._ctx,
            server_hostname=self.server_hostname if self._ctx else None), TIMEOUT_S)
        sock = writer.get_extra_info("socket")
        with contextlib.suppress(OSError, AttributeError):  # as the node: alerts are small
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            writer.write(connect_packet(self.ident.node_id, self.keepalive_s,
                                        self.topics.status,
                                        self._status("offline", "connection lost")))
            ptype, _, body = await asyncio.wait_for(read_packet(reader), TIMEOUT_S)
            if ptype != CONNACK:
                raise ProtocolError(f"expected CONNACK, got packet type {ptype}")
            if body[1] >= 0x80:
                self.errors["refused"] += 1
                raise ProtocolError(f"connection refused: reason 0x{body[1]:02x}")
            self._writer = writer
            self.connected = True
            self.connects += 1
            self.backoff.reset()
            for packet in list(self._inflight.values()):  # unacknowledged: again, with DUP
                self._send(bytes([packet[0] | 0x08]) + packet[1:])
            self._publish_qos1(self.topics.status, self._status("online"), retain=True)
            queued, self._queued = self._queued, []
            for topic, payload in queued:
                self._publish_qos1(topic, payload)
            self._pid = self._pid % 65535 + 1
            self._sub_pid = self._pid
            self._send(subscribe_packet(self._pid, [self.topics.ack, self.topics.commands]))
            pings = asyncio.create_task(self._pings())
            try:
                while True:
                    self._on_packet(*await read_packet(reader))
            finally:
                pings.cancel()
        finally:
            writer.close()

    def _lost(self) -> None:
        if self.connected:
            self.disconnects += 1
        if self.subscribed:
            self.links.append((time.monotonic(), False))
        self._writer = None
        self.connected = self.subscribed = False

    def _on_packet(self, ptype: int, flags: int, body: bytes) -> None:
        if ptype == PUBACK:
            pid = int.from_bytes(body[:2], "big")
            if self._inflight.pop(pid, None) is not None and len(body) > 2 and body[2] >= 0x80:
                self.errors["refused publish"] += 1
        elif ptype == SUBACK:
            self._on_suback(body)
        elif ptype == PUBLISH:
            self._on_publish(flags, body)
        elif ptype == DISCONNECT:
            raise ProtocolError(f"broker disconnected: reason 0x{body[0] if body else 0:02x}")

    def _on_suback(self, body: bytes) -> None:
        pid = int.from_bytes(body[:2], "big")
        props, i = _read_varint(body, 2)
        codes = body[i + props:]
        if any(c >= 0x80 for c in codes):
            self.errors["refused subscription"] += 1
        if pid == self._sub_pid:
            self.subscribed = True
            self.links.append((time.monotonic(), True))

    def _on_publish(self, flags: int, body: bytes) -> None:
        """A message from the broker: acked if QoS 1; the hub's ack of an alert timed."""
        topic, pid, payload = parse_publish(flags, body)
        if pid:
            self._send(_packet(0x40, pid.to_bytes(2, "big")))
        if topic != self.topics.ack:
            return
        try:
            ack = Ack.model_validate_json(payload)
        except ValueError:
            self.errors["malformed ack"] += 1
            return
        sent = self.alerts.get(ack.alert_id)
        if sent is not None and sent.ack_rtt is None:
            sent.ack_rtt = time.monotonic() - sent.raised

    async def _pings(self) -> None:
        while True:
            await asyncio.sleep(self.keepalive_s / 2)
            if time.monotonic() - self._last_sent >= self.keepalive_s / 2:
                self._send(PINGREQ_PACKET)

    async def _beats(self) -> None:
        # Each pole's phase is random: a city's heartbeats do not arrive in one burst.
        await asyncio.sleep(random.uniform(0, self.heartbeat_s))  # noqa: S311 (load spread)
        while True:
            if self._writer is not None:
                self._send(publish_packet(self.topics.telemetry, self.heartbeat(), 0))
            await asyncio.sleep(self.heartbeat_s)

    @property
    def pending(self) -> int:
        """QoS 1 messages not yet acknowledged by the broker (in flight or queued)."""
        return len(self._inflight) + len(self._queued)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.write(DISCONNECT_PACKET)
            self._writer.close()


# --- a process of poles, driven over a pipe ---


@dataclass(frozen=True)
class PoleProcess:
    """What one fleet process runs: its poles and how they reach the broker."""

    poles: list[PoleIdentity]
    host: str
    port: int
    server_hostname: str | None = None
    keepalive_s: int = 10
    heartbeat_s: float = 10.0
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0


def fixed_schedule() -> float:
    """Backoff's rng without jitter: every pole waits the full min·2^n, in lock-step."""
    return 1.0


@dataclass
class _Knobs:
    """What the benchmark may change while the poles run."""

    alerts_per_s: float = 0.0  # for the whole process, Poisson
    phase: str = ""  # tag of alerts raised from now on
    jitter: bool = True

    def rng(self) -> float:
        """The reconnect backoff's jitter (a load pattern, not a secret), or none."""
        return random.random() if self.jitter else fixed_schedule()  # noqa: S311


async def _alerts(poles: list[Pole], knobs: _Knobs) -> None:
    """Alerts from random poles at knobs.alerts_per_s (Poisson; a load, not a secret)."""
    while True:
        if knobs.alerts_per_s <= 0:
            await asyncio.sleep(0.05)
            continue
        await asyncio.sleep(random.expovariate(knobs.alerts_per_s))
        if knobs.alerts_per_s > 0:
            random.choice(poles).raise_alert(knobs.phase)  # noqa: S311


async def _counts(poles: list[Pole], conn: Connection) -> None:
    """The poles' link and queue counts, and this process's CPU time, every 0.1 s."""
    while True:
        cpu = os.times()
        conn.send(("counts", sum(p.connected for p in poles),
                   sum(p.subscribed for p in poles),
                   sum(p.pending for p in poles),
                   cpu.user + cpu.system))
        await asyncio.sleep(0.1)


def run_poles(spec: PoleProcess, conn: Connection) -> None:
    """Process entry. Commands from the benchmark: ("go",), ("alerts", per_s, phase),
    ("jitter", bool), ("stop",). Reports ("ready",), ("counts", ...) every 0.1 s and at
    the end ("report", {...})."""
    asyncio.run(_serve(spec, conn))


async def _serve(spec: PoleProcess, conn: Connection) -> None:
    knobs = _Knobs()
    poles = [Pole(p, spec.host, spec.port, spec.server_hostname, spec.keepalive_s,
                  spec.heartbeat_s, Backoff(spec.reconnect_min_s, spec.reconnect_max_s,
                                            knobs.rng))
             for p in spec.poles]
    conn.send(("ready",))
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
    loop.add_reader(conn.fileno(), lambda: commands.put_nowait(conn.recv()))
    tasks: list[asyncio.Task[None]] = [asyncio.create_task(_counts(poles, conn))]
    while True:
        cmd = await commands.get()
        if cmd[0] == "stop":
            break
        if cmd[0] == "go":
            tasks += [asyncio.create_task(p.run()) for p in poles]
            tasks.append(asyncio.create_task(_alerts(poles, knobs)))
        elif cmd[0] == "alerts":
            knobs.alerts_per_s, knobs.phase = cmd[1], cmd[2]
        elif cmd[0] == "jitter":
            knobs.jitter = bool(cmd[1])
    for t in tasks:
        t.cancel()
    for p in poles:
        p.close()
    await asyncio.sleep(0.2)
    conn.send(("report", {
        "links": [p.links for p in poles],
        "alerts": [a for p in poles for a in p.alerts.values()],
        "errors": sum((p.errors for p in poles), Counter()),
        "unacked_publishes": sum(p.pending for p in poles),
    }))
