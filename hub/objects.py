"""The objects book: per node, the objects its cameras' vision pipeline tracked, one
ObjectRecord per event id, merged from its new → update → end messages whatever order (and
however many copies) they arrive in. Bounded per node (MAX_OBJECTS), so a busy street cannot
push out what a quiet pole saw. Also the object figures of the hub's summary. No locking:
HubState holds its lock around every call.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from contract.payloads import Event, EventPhase
from hub.events import HubEvent, cut
from hub.stats import duration

# Tracked objects kept per node; per node so a busy street cannot push out what a quiet pole saw
MAX_OBJECTS = 10_000
EVENT_KEYS_KEPT = 16  # per object, the last (phase, time) keys seen, to spot redelivered copies

# HubEvent.kind of an object's lines, by phase; equal lengths keep --plain logs aligned
_KIND = {EventPhase.NEW: "new", EventPhase.UPDATE: "upd", EventPhase.END: "end"}


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


def _union(kept: tuple[str, ...], *more: Sequence[str]) -> tuple[str, ...]:
    """kept, then the new names of more in order of first appearance."""
    out = list(kept)
    for names in more:
        out += [n for n in names if n not in out]
    return tuple(out)


def _is_copy(rec: ObjectRecord, msg: Event) -> bool:
    """Whether msg is a copy of one rec already took (a QoS 1 redelivery); remembers it if
    not."""
    key = (str(msg.phase), msg.time)
    if key in rec.keys:
        return True
    rec.keys[key] = None
    if len(rec.keys) > EVENT_KEYS_KEPT:
        del rec.keys[next(iter(rec.keys))]
    return False


def _take_history(rec: ObjectRecord, msg: Event) -> None:
    """What a message says about the past, which holds whatever order it arrives in."""
    rec.zones_seen = _union(rec.zones_seen, msg.entered, msg.zones)
    rec.loitered = _union(rec.loitered, msg.loitering)
    if msg.time < rec.first_time:
        rec.first_phase, rec.first_time = str(msg.phase), msg.time


def _take_latest(rec: ObjectRecord, msg: Event) -> str | None:
    """Take msg as the object's latest state; return the line it is worth, or None for a
    periodic update in which nothing a dispatcher acts on changed."""
    before_loitering, before_stationary = rec.loitering, rec.stationary
    rec.last_phase, rec.last_time, rec.score = str(msg.phase), msg.time, msg.score
    rec.zones, rec.loitering = tuple(msg.zones), tuple(msg.loitering)
    rec.stationary = msg.stationary
    rec.snapshot = msg.snapshot or rec.snapshot
    who = f"{rec.node} {rec.camera}: {rec.label} #{rec.track}"
    if msg.phase == EventPhase.NEW:
        where = f" in {', '.join(msg.zones)}" if msg.zones else ""
        return f"{who} appeared{where}"
    if msg.phase == EventPhase.END:
        return f"{who} gone after {duration(rec.seen_s)}"
    changes = [f"{verb} {', '.join(zones)}" for verb, zones in (
        ("entered", msg.entered),
        ("left", msg.left),
        ("loitering in", [z for z in msg.loitering if z not in before_loitering]),
    ) if zones]
    if msg.stationary and not before_stationary:
        changes.append("stationary")
    return f"{who} {'; '.join(changes)}" if changes else None


class ObjectBook:
    """Every node's tracked objects, by event id. Readers get copies."""

    def __init__(self) -> None:
        self._books: dict[str, dict[str, ObjectRecord]] = {}  # node → event id → object
        self._order = itertools.count()
        self.forgotten = 0  # objects dropped past MAX_OBJECTS per node
        self.received = 0  # event messages, copies included
        self.duplicates = 0  # event messages that were copies

    def receive(self, msg: Event, at: datetime, events: list[HubEvent]) -> None:
        """Take one event message, received at `at`; add the line it is worth to events."""
        self.received += 1
        rec, fresh = self._record(msg, at)
        rec.messages += 1
        if _is_copy(rec, msg):
            rec.duplicates += 1
            self.duplicates += 1
            return
        _take_history(rec, msg)
        if not fresh and msg.time < rec.last_time:
            return  # older than what we know (redelivered late): must not undo a later state
        text = _take_latest(rec, msg)
        if text is not None:
            events.append(HubEvent(at, f"object_{_KIND[msg.phase]}", cut(text), rec.node))

    def _record(self, msg: Event, at: datetime) -> tuple[ObjectRecord, bool]:
        """The object msg is about, and whether it is new (made from msg)."""
        book = self._books.setdefault(msg.node, {})
        rec = book.get(msg.id)
        if rec is not None:
            return rec, False
        rec = ObjectRecord(
            event_id=msg.id, node=msg.node, camera=msg.camera, track=msg.track,
            label=msg.label, score=msg.score, first_phase=str(msg.phase),
            last_phase=str(msg.phase),
            started=msg.started, first_time=msg.time, last_time=msg.time, received_at=at,
            order=next(self._order),
        )
        book[msg.id] = rec
        if len(book) > MAX_OBJECTS:
            del book[next(iter(book))]
            self.forgotten += 1
        return rec, True

    def latest(self, limit: int | None = None, node: str | None = None) -> list[ObjectRecord]:
        """Copies, newest first (by their first message at the hub); of one node or of all."""
        books = [self._books.get(node, {})] if node is not None else self._books.values()
        newest: list[ObjectRecord] = []
        for book in books:  # each book is in arrival order: its newest are at the end
            newest += itertools.islice(reversed(book.values()), limit)
        newest.sort(key=lambda o: o.order, reverse=True)
        return [replace(o) for o in newest[:limit]]

    def get(self, event_id: str) -> ObjectRecord | None:
        for book in self._books.values():
            rec = book.get(event_id)
            if rec is not None:
                return replace(rec)
        return None

    def counts(self) -> dict[str, Any]:
        """The summary's object figures: events_received, event_duplicates, objects_seen,
        objects_open, objects_by_label, loitering, objects_forgotten."""
        by_label: Counter[str] = Counter()
        seen = open_ = loitered = 0
        for book in self._books.values():
            for o in book.values():
                seen += 1
                open_ += o.open
                loitered += bool(o.loitered)
                by_label[o.label] += 1
        return {
            "events_received": self.received,
            "event_duplicates": self.duplicates,
            "objects_seen": seen,
            "objects_open": open_,
            "objects_by_label": dict(sorted(by_label.items())),
            "loitering": loitered,
            "objects_forgotten": self.forgotten,
        }
