"""What the hub knows about its poles, built only from the messages it receives.

HubState parses node messages with the contract models, keeps each node's last status (with
its health verdict) and heartbeat (with its cameras' stats and its pole hardware: inputs,
relays, PTZ head, GPS, sensors), drops duplicate alerts by id, counts sequence gaps
(possible loss) and garbage, and says which alerts need an ack. It also keeps, per node, the
objects the vision pipeline tracked (ObjectRecord: one per event id, built from its
new → update → end messages), and hands the poles' answers to the hub's commands to the
clip book (`clips`, hub/clips.py). No I/O: the console feeds it messages and acks. Every
method is thread-safe; readers get copies, never the live records.
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from contract import topics
from contract.commands import Response
from contract.payloads import Alert, CameraStats, Event, EventPhase, Heartbeat, Status
from contract.pole import GpsStats, InputStats, OutputStats, PtzStats, SensorStats
from hub.clips import ClipBook

GARBAGE_KEPT = 5  # the last few malformed messages are kept for display
MAX_ALERTS = 100_000  # past this the oldest alerts are forgotten, so a flood cannot exhaust memory
# Tracked objects kept per node, likewise; per node so a busy street cannot push out what a
# quiet pole saw
MAX_OBJECTS = 10_000
EVENT_KEYS_KEPT = 16  # per object, the last (phase, time) keys seen, to spot redelivered copies
TEXT_LIMIT = 300  # topics and error texts from the network are cut to this many characters

# What the node publishes, by topic leaf. Other leaves (the hub's own acks) are ignored.
_MODELS: dict[str, type[Status | Alert | Heartbeat | Event | Response]] = {
    "status": Status,
    "alert": Alert,
    "telemetry": Heartbeat,
    "event": Event,
    "response": Response,
}


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), interpolating between ranks as numpy's default does."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    s = sorted(values)
    pos = (len(s) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def _ms(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds() * 1000


def _cut(text: str) -> str:
    return text if len(text) <= TEXT_LIMIT else text[: TEXT_LIMIT - 1] + "…"


def duration(seconds: float) -> str:
    """A span for people: 42s, 3m05s, 1h02m (negative spans, from skewed clocks, show 0s)."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _union(kept: tuple[str, ...], *more: Sequence[str]) -> tuple[str, ...]:
    """kept, then the new names of more in order of first appearance."""
    out = list(kept)
    for names in more:
        out += [n for n in names if n not in out]
    return tuple(out)


@dataclass(frozen=True)
class PoleHardware:
    """A pole's devices beyond the call button, as in its last heartbeat. Replaced whole by
    the next heartbeat, never changed in place."""

    inputs: dict[str, InputStats]
    outputs: dict[str, OutputStats]
    ptz: PtzStats | None
    gps: GpsStats | None
    sensors: dict[str, SensorStats]

    @classmethod
    def of(cls, hb: Heartbeat) -> PoleHardware | None:
        """None for a pole that reports no such device (an alarm-only pole)."""
        if not (hb.inputs or hb.outputs or hb.ptz or hb.gps or hb.sensors):
            return None
        return cls(dict(hb.inputs), dict(hb.outputs), hb.ptz, hb.gps, dict(hb.sensors))

    def copy(self) -> PoleHardware:
        return replace(self, inputs=dict(self.inputs), outputs=dict(self.outputs),
                       sensors=dict(self.sensors))


@dataclass
class NodeView:
    """One pole as the hub sees it."""

    node_id: str
    state: str = "unknown"  # "online" or "offline" once its status arrives
    reason: str = ""
    version: str = ""
    site: str = ""
    since: datetime | None = None  # the time in its last status
    boot: str = ""
    heartbeat_at: datetime | None = None  # when the hub received its last heartbeat
    uptime_s: float | None = None
    outbox_pending: int | None = None
    outbox_unacked: int | None = None
    link_connects: int | None = None
    link_disconnects: int | None = None
    seq_missing: int = 0  # seqs never seen between the lowest and highest seen
    cameras: dict[str, CameraStats] = field(default_factory=dict)  # as in its last heartbeat
    health: str = "ok"  # the node's own verdict, from its status: ok, degraded or failed
    reasons: tuple[str, ...] = ()  # why degraded or failed
    hardware: PoleHardware | None = None  # as in its last heartbeat


@dataclass
class AlertRecord:
    """One alert, however many copies of it arrived."""

    alert_id: str
    node: str
    seq: int
    kind: str
    source: str
    site: str
    clock_synced: bool
    raised_at: datetime  # alert.time, by the node's clock
    received_at: datetime  # first copy, by the hub's clock
    copies: int = 1
    acked_at: datetime | None = None

    @property
    def duplicates(self) -> int:
        return self.copies - 1

    @property
    def acked(self) -> bool:
        return self.acked_at is not None

    @property
    def latency_ms(self) -> float:
        """From raised on the pole to received at the hub; skewed if the node's clock is off."""
        return _ms(self.received_at, self.raised_at)

    @property
    def ack_latency_ms(self) -> float | None:
        return None if self.acked_at is None else _ms(self.acked_at, self.received_at)


@dataclass
class ObjectRecord:
    """One object a pole's camera tracked: everything its event messages said, merged.
    Times are by the node's clock except received_at; zone names come from the node's config."""

    event_id: str
    node: str
    camera: str
    track: int
    label: str
    score: float
    first_phase: str  # of the earliest message received: "new" unless we joined late
    last_phase: str  # of the latest message: "end" once the object is gone
    started: datetime  # when the pole first saw it
    first_time: datetime  # of the earliest message received
    last_time: datetime  # of the latest message received
    received_at: datetime  # its first message, by the hub's clock
    order: int  # arrival rank at the hub, across nodes: lists sort on it
    zones: tuple[str, ...] = ()  # where it is (or was, when it ended)
    zones_seen: tuple[str, ...] = ()  # every zone it was in, in order of entry
    loitering: tuple[str, ...] = ()  # zones it loiters in now
    loitered: tuple[str, ...] = ()  # every zone it loitered in
    stationary: bool = False
    snapshot: str | None = None
    messages: int = 0  # copies included
    duplicates: int = 0
    # (phase, time) of its last few messages; copies carry the same key. Not copied to readers.
    keys: dict[tuple[str, datetime], None] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def open(self) -> bool:
        return self.last_phase != EventPhase.END

    @property
    def seen_s(self) -> float:
        """From first seen to its latest message: how long it was (or has been) there."""
        return (self.last_time - self.started).total_seconds()


@dataclass(frozen=True)
class Garbage:
    """A message the hub could not use, kept to show the operator why."""

    at: datetime
    topic: str
    reason: str  # "topic", "json", "schema" or "node_mismatch"
    error: str


@dataclass(frozen=True)
class HubEvent:
    """Something the operator may want to see as a line: status change, alert, ack, garbage."""

    at: datetime
    kind: str
    text: str
    node: str = ""
    alert_id: str = ""


EventHook = Callable[[HubEvent], None]

# HubEvent.kind of an object's lines, by phase; equal lengths keep --plain logs aligned
_KIND = {EventPhase.NEW: "new", EventPhase.UPDATE: "upd", EventPhase.END: "end"}


@dataclass
class _Seqs:
    seen: set[int]
    low: int
    high: int

    def add(self, seq: int) -> int:
        self.seen.add(seq)
        self.low, self.high = min(self.low, seq), max(self.high, seq)
        return self.high - self.low + 1 - len(self.seen)


def _describe(e: ValidationError) -> str:
    parts = []
    for err in e.errors(include_url=False)[:3]:
        where = ".".join(str(p) for p in err["loc"])
        parts.append(f"{where}: {err['msg']}" if where else str(err["msg"]))
    more = e.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


class HubState:
    """Nodes, alerts and garbage, as received. `on_event` is called outside the lock for
    each thing worth a line of log; receive() itself never raises on any input."""

    def __init__(self, on_event: EventHook | None = None) -> None:
        self.on_event = on_event
        self._lock = threading.Lock()
        self._nodes: dict[str, NodeView] = {}
        self._seqs: dict[str, _Seqs] = {}
        self._alerts: dict[str, AlertRecord] = {}  # insertion order = order first received
        self._forgotten = 0
        self._garbage: Counter[str] = Counter()
        self._recent_garbage: deque[Garbage] = deque(maxlen=GARBAGE_KEPT)
        self._ignored = 0
        self._objects: dict[str, dict[str, ObjectRecord]] = {}  # node → event id → object
        self._object_order = itertools.count()
        self._objects_forgotten = 0
        self._events_received = 0
        self._event_duplicates = 0
        self.clips = ClipBook()  # thread-safe on its own

    # --- input ---

    def receive(self, topic: str, payload: bytes, received_at: datetime,
                correlation: bytes | None = None) -> list[str]:
        """Take one message (with its MQTT 5 correlation data, if any); return the ids of
        alerts to acknowledge now. A duplicate is re-acked even if already acked: the node
        re-sends only while it lacks our ack."""
        events: list[HubEvent] = []
        with self._lock:
            acks = self._receive(topic, payload, received_at, correlation, events)
        self._emit(events)
        return acks

    def mark_acked(self, alert_id: str, at: datetime) -> bool:
        """Record that the broker took our ack; the first ack time is kept. False if unknown."""
        events: list[HubEvent] = []
        with self._lock:
            rec = self._alerts.get(alert_id)
            if rec is None:
                return False
            if rec.acked_at is None:
                rec.acked_at = at
                events.append(HubEvent(
                    at, "acked", f"{rec.node} seq {rec.seq} acked "
                    f"{rec.ack_latency_ms:.0f} ms after it arrived", rec.node, alert_id,
                ))
        self._emit(events)
        return True

    def _emit(self, events: list[HubEvent]) -> None:
        hook = self.on_event
        if hook is not None:
            for ev in events:
                hook(ev)

    def _receive(
        self, topic: str, payload: bytes, at: datetime, correlation: bytes | None,
        events: list[HubEvent],
    ) -> list[str]:
        parsed = topics.parse(topic)
        if parsed is None:
            self._add_garbage(at, topic, "topic", f"not {topics.ROOT}/<node>/<leaf>", events)
            return []
        node_id, leaf = parsed
        model = _MODELS.get(leaf.split("/", 1)[0])  # response/<rest>: an MQTT 5 response topic
        if model is None:
            self._ignored += 1
            return []
        try:
            msg = model.model_validate_json(payload)
        except ValidationError as e:
            bad_json = any(err["type"] == "json_invalid" for err in e.errors())
            self._add_garbage(at, topic, "json" if bad_json else "schema", _describe(e), events)
            return []
        if isinstance(msg, Response):  # carries no node: it is the topic's
            line = self.clips.answer(node_id, msg, correlation, at)
            if line:
                events.append(HubEvent(at, "clip", _cut(line), node_id))
            return []
        if msg.node != node_id:
            self._add_garbage(
                at, topic, "node_mismatch", f"payload is from node {msg.node!r}", events
            )
            return []
        node = self._nodes.setdefault(node_id, NodeView(node_id))
        if isinstance(msg, Status):
            self._on_status(node, msg, at, events)
            return []
        if isinstance(msg, Heartbeat):
            node.heartbeat_at = at
            node.uptime_s = msg.uptime_s
            node.outbox_pending, node.outbox_unacked = msg.outbox.pending, msg.outbox.unacked
            node.link_connects = msg.link.connects
            node.link_disconnects = msg.link.disconnects
            # replaced, not merged: a heartbeat lists every camera the pole runs now
            node.cameras = dict(msg.cameras)
            node.hardware = PoleHardware.of(msg)
            return []
        if isinstance(msg, Event):
            self._on_event(msg, at, events)
            return []
        self._on_alert(node, msg, at, events)
        return [msg.id]

    def _on_status(
        self, node: NodeView, msg: Status, at: datetime, events: list[HubEvent]
    ) -> None:
        was = (node.state, node.health, node.reasons)
        node.state, node.reason, node.since = msg.state, msg.reason, msg.time
        node.version, node.site, node.boot = msg.version, msg.site, msg.boot
        node.health, node.reasons = msg.health, tuple(msg.reasons)
        verdict = msg.health + (f": {'; '.join(msg.reasons)}" if msg.reasons else "")
        if was[0] == msg.state == "online" and was[1:] != (node.health, node.reasons):
            # the node republishes its status when its verdict changes: say only that
            events.append(HubEvent(at, "health", _cut(f"{node.node_id} {verdict}"),
                                   node.node_id))
            return
        why = f" ({msg.reason})" if msg.reason else ""
        health = f", {verdict}" if msg.state == "online" and verdict != "ok" else ""
        events.append(HubEvent(
            at, "status", _cut(f"{node.node_id} {msg.state}{why}{health}, {msg.version} at "
                               f"{msg.site}"), node.node_id,
        ))

    def _on_alert(self, node: NodeView, msg: Alert, at: datetime, events: list[HubEvent]) -> None:
        rec = self._alerts.get(msg.id)
        if rec is not None:
            rec.copies += 1
            state = "acked before, re-acking" if rec.acked else "not acked yet"
            events.append(HubEvent(
                at, "duplicate", f"{rec.node} seq {rec.seq} copy {rec.copies} ({state})",
                rec.node, rec.alert_id,
            ))
            return
        rec = AlertRecord(
            alert_id=msg.id, node=msg.node, seq=msg.seq, kind=str(msg.kind), source=msg.source,
            site=msg.site, clock_synced=msg.clock_synced, raised_at=msg.time, received_at=at,
        )
        self._alerts[msg.id] = rec
        if len(self._alerts) > MAX_ALERTS:
            del self._alerts[next(iter(self._alerts))]
            self._forgotten += 1
        seqs = self._seqs.get(node.node_id)
        if seqs is None:
            self._seqs[node.node_id] = _Seqs({msg.seq}, msg.seq, msg.seq)
        else:
            node.seq_missing = seqs.add(msg.seq)
        events.append(HubEvent(
            at, "alert", f"{rec.node} seq {rec.seq} {rec.kind} from {rec.source}, "
            f"{rec.latency_ms:.0f} ms after it was raised", rec.node, rec.alert_id,
        ))

    def _on_event(self, msg: Event, at: datetime, events: list[HubEvent]) -> None:
        self._events_received += 1
        book = self._objects.setdefault(msg.node, {})
        rec = book.get(msg.id)
        fresh = rec is None
        if rec is None:
            rec = ObjectRecord(
                event_id=msg.id, node=msg.node, camera=msg.camera, track=msg.track,
                label=msg.label, score=msg.score, first_phase=str(msg.phase),
                last_phase=str(msg.phase),
                started=msg.started, first_time=msg.time, last_time=msg.time, received_at=at,
                order=next(self._object_order),
            )
            book[msg.id] = rec
            if len(book) > MAX_OBJECTS:
                del book[next(iter(book))]
                self._objects_forgotten += 1
        rec.messages += 1
        key = (str(msg.phase), msg.time)
        if key in rec.keys:  # QoS 1 redelivery: the same message again
            rec.duplicates += 1
            self._event_duplicates += 1
            return
        rec.keys[key] = None
        if len(rec.keys) > EVENT_KEYS_KEPT:
            del rec.keys[next(iter(rec.keys))]
        # what a message says about the past holds whatever order it arrives in
        rec.zones_seen = _union(rec.zones_seen, msg.entered, msg.zones)
        rec.loitered = _union(rec.loitered, msg.loitering)
        if msg.time < rec.first_time:
            rec.first_phase, rec.first_time = str(msg.phase), msg.time
        if not fresh and msg.time < rec.last_time:
            return  # older than what we know (redelivered late): must not undo a later state
        before_loitering, before_stationary = rec.loitering, rec.stationary
        rec.last_phase, rec.last_time, rec.score = str(msg.phase), msg.time, msg.score
        rec.zones, rec.loitering = tuple(msg.zones), tuple(msg.loitering)
        rec.stationary = msg.stationary
        rec.snapshot = msg.snapshot or rec.snapshot
        who = f"{rec.node} {rec.camera}: {rec.label} #{rec.track}"
        if msg.phase == EventPhase.NEW:
            where = f" in {', '.join(msg.zones)}" if msg.zones else ""
            text = f"{who} appeared{where}"
        elif msg.phase == EventPhase.END:
            text = f"{who} gone after {duration(rec.seen_s)}"
        else:
            changes = [f"{verb} {', '.join(zones)}" for verb, zones in (
                ("entered", msg.entered),
                ("left", msg.left),
                ("loitering in", [z for z in msg.loitering if z not in before_loitering]),
            ) if zones]
            if msg.stationary and not before_stationary:
                changes.append("stationary")
            if not changes:
                return  # a periodic update: nothing a dispatcher acts on changed
            text = f"{who} {'; '.join(changes)}"
        events.append(HubEvent(at, f"object_{_KIND[msg.phase]}", _cut(text), rec.node))

    def _add_garbage(
        self, at: datetime, topic: str, reason: str, error: str, events: list[HubEvent]
    ) -> None:
        self._garbage[reason] += 1
        g = Garbage(at, _cut(topic), reason, _cut(error))
        self._recent_garbage.append(g)
        events.append(HubEvent(at, "garbage", f"{reason} on {g.topic}: {g.error}"))

    # --- reading ---

    def nodes(self) -> list[NodeView]:
        with self._lock:
            return [replace(n, cameras=dict(n.cameras),
                            hardware=n.hardware.copy() if n.hardware else None)
                    for _, n in sorted(self._nodes.items())]

    def alerts(self, limit: int | None = None) -> list[AlertRecord]:
        """Newest first (by arrival at the hub)."""
        with self._lock:
            newest = itertools.islice(reversed(self._alerts.values()), limit)
            return [replace(a) for a in newest]

    def alert(self, alert_id: str) -> AlertRecord | None:
        with self._lock:
            rec = self._alerts.get(alert_id)
            return None if rec is None else replace(rec)

    def pending(self) -> list[AlertRecord]:
        """Alerts not yet acked, oldest first."""
        with self._lock:
            return [replace(a) for a in self._alerts.values() if not a.acked]

    def objects(self, limit: int | None = None, node: str | None = None) -> list[ObjectRecord]:
        """Tracked objects, newest first (by their first message at the hub); of one node or
        of all."""
        with self._lock:
            books = [self._objects.get(node, {})] if node is not None else self._objects.values()
            newest: list[ObjectRecord] = []
            for book in books:  # each book is in arrival order: its newest are at the end
                newest += itertools.islice(reversed(book.values()), limit)
            newest.sort(key=lambda o: o.order, reverse=True)
            return [replace(o) for o in newest[:limit]]

    def object(self, event_id: str) -> ObjectRecord | None:
        with self._lock:
            for book in self._objects.values():
                rec = book.get(event_id)
                if rec is not None:
                    return replace(rec)
            return None

    def garbage(self) -> tuple[dict[str, int], list[Garbage]]:
        """Malformed-message counts by reason, and the last few, newest last."""
        with self._lock:
            return dict(self._garbage), list(self._recent_garbage)

    def summary(self) -> dict[str, Any]:
        """Totals for the demo and --summary-json: alerts_unique, copies, duplicates, acked,
        pending, latency_{p50,p99,max}_ms (raised → received), ack_latency_{p50,p99,max}_ms
        (received → broker took our ack), seq_missing, malformed (+ _by_reason), ignored,
        nodes, nodes_online, alerts_forgotten. Latencies are None when there is no data.
        Vision: events_received (copies included), event_duplicates, objects_seen (unique
        event ids), objects_open (no `end` yet), objects_by_label, loitering (objects that
        loitered anywhere), objects_forgotten (past MAX_OBJECTS per node; the counts above
        are of the objects kept), cameras_online, cameras_offline, cameras_by_node
        {node: {"online": n, "offline": n}} from each node's last heartbeat. Clips: see
        ClipBook.counts()."""
        with self._lock:
            recs = list(self._alerts.values())
            nodes = [replace(n) for n in self._nodes.values()]
            garbage = dict(self._garbage)
            forgotten, ignored = self._forgotten, self._ignored
            objects = self._object_counts()
        lat = [a.latency_ms for a in recs]
        ack_lat = [a.ack_latency_ms for a in recs if a.ack_latency_ms is not None]
        copies = sum(a.copies for a in recs)
        acked = sum(1 for a in recs if a.acked)
        out: dict[str, Any] = {
            "alerts_unique": len(recs),
            "copies": copies,
            "duplicates": copies - len(recs),
            "acked": acked,
            "pending": len(recs) - acked,
        }
        for name, values in (("latency", lat), ("ack_latency", ack_lat)):
            for label, q in (("p50", 50.0), ("p99", 99.0), ("max", 100.0)):
                out[f"{name}_{label}_ms"] = round(percentile(values, q), 1) if values else None
        out.update(
            seq_missing=sum(n.seq_missing for n in nodes),
            malformed=sum(garbage.values()),
            malformed_by_reason=dict(sorted(garbage.items())),
            ignored=ignored,
            nodes=len(nodes),
            nodes_online=sum(1 for n in nodes if n.state == "online"),
            alerts_forgotten=forgotten,
            **objects,
        )
        by_node = {
            n.node_id: {"online": sum(c.online for c in n.cameras.values()),
                        "offline": sum(not c.online for c in n.cameras.values())}
            for n in sorted(nodes, key=lambda n: n.node_id) if n.cameras
        }
        out.update(
            cameras_online=sum(c["online"] for c in by_node.values()),
            cameras_offline=sum(c["offline"] for c in by_node.values()),
            cameras_by_node=by_node,
            **self.clips.counts(),
        )
        return out

    def _object_counts(self) -> dict[str, Any]:
        """The summary's object figures; call with the lock held."""
        by_label: Counter[str] = Counter()
        seen = open_ = loitered = 0
        for book in self._objects.values():
            for o in book.values():
                seen += 1
                open_ += o.open
                loitered += bool(o.loitered)
                by_label[o.label] += 1
        return {
            "events_received": self._events_received,
            "event_duplicates": self._event_duplicates,
            "objects_seen": seen,
            "objects_open": open_,
            "objects_by_label": dict(sorted(by_label.items())),
            "loitering": loitered,
            "objects_forgotten": self._objects_forgotten,
        }
