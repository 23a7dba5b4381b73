"""What the hub knows about its poles, built only from the messages it receives.

HubState parses node messages with the contract models and hands each to the book that
keeps it: a node's status and heartbeat to its NodeView (hub/nodes.py), alerts to the
alerts book (hub/alerts.py: duplicates dropped by id, sequence gaps counted), vision events
to the objects book (hub/objects.py) and the poles' answers to the hub's commands to the
clip book (`clips`, hub/clips.py). It counts and keeps the garbage (messages it could not
use) itself, says which alerts need an ack, and sums it all up for the demo and
--summary-json. No I/O: the console feeds it messages and acks. Every method is
thread-safe; readers get copies, never the live records.

The records and helpers the books use are importable from here too, as before the split.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from contract import topics
from contract.commands import Response
from contract.payloads import Alert, Event, Heartbeat, Status
from hub.alerts import AlertBook, AlertRecord, alert_figures
from hub.clips import ClipBook
from hub.events import TEXT_LIMIT, EventHook, HubEvent, cut
from hub.nodes import NodeView, PoleHardware, camera_figures
from hub.objects import ObjectBook, ObjectRecord
from hub.stats import duration, percentile

__all__ = [
    "GARBAGE_KEPT",
    "TEXT_LIMIT",
    "AlertRecord",
    "EventHook",
    "Garbage",
    "HubEvent",
    "HubState",
    "NodeView",
    "ObjectRecord",
    "PoleHardware",
    "duration",
    "percentile",
]

GARBAGE_KEPT = 5  # the last few malformed messages are kept for display

# What the node publishes, by topic leaf. Other leaves (the hub's own acks) are ignored.
_MODELS: dict[str, type[Status | Alert | Heartbeat | Event | Response]] = {
    "status": Status,
    "alert": Alert,
    "telemetry": Heartbeat,
    "event": Event,
    "response": Response,
}


@dataclass(frozen=True)
class Garbage:
    """A message the hub could not use, kept to show the operator why."""

    at: datetime
    topic: str
    reason: str  # "topic", "json", "schema" or "node_mismatch"
    error: str


def _describe(e: ValidationError) -> str:
    parts = []
    for err in e.errors(include_url=False)[:3]:
        where = ".".join(str(p) for p in err["loc"])
        parts.append(f"{where}: {err['msg']}" if where else str(err["msg"]))
    more = e.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


class HubState:
    """Nodes, alerts, objects and garbage, as received. `on_event` is called outside the
    lock for each thing worth a line of log; receive() itself never raises on any input."""

    def __init__(self, on_event: EventHook | None = None) -> None:
        self.on_event = on_event
        self._lock = threading.Lock()  # guards the books below and the garbage counts
        self._nodes: dict[str, NodeView] = {}
        self._alerts = AlertBook()
        self._objects = ObjectBook()
        self._garbage: Counter[str] = Counter()
        self._recent_garbage: deque[Garbage] = deque(maxlen=GARBAGE_KEPT)
        self._ignored = 0
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
            known = self._alerts.ack(alert_id, at, events)
        self._emit(events)
        return known

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
                events.append(HubEvent(at, "clip", cut(line), node_id))
            return []
        if msg.node != node_id:
            self._add_garbage(
                at, topic, "node_mismatch", f"payload is from node {msg.node!r}", events
            )
            return []
        return self._dispatch(msg, at, events)

    def _dispatch(
        self, msg: Status | Alert | Heartbeat | Event, at: datetime, events: list[HubEvent]
    ) -> list[str]:
        """Hand a node's message to its book; the ids of alerts to acknowledge now."""
        node = self._nodes.setdefault(msg.node, NodeView(msg.node))
        if isinstance(msg, Status):
            node.take_status(msg, at, events)
        elif isinstance(msg, Heartbeat):
            node.take_heartbeat(msg, at)
        elif isinstance(msg, Event):
            self._objects.receive(msg, at, events)
        else:
            missing = self._alerts.receive(msg, at, events)
            if missing is not None:
                node.seq_missing = missing
            return [msg.id]
        return []

    def _add_garbage(
        self, at: datetime, topic: str, reason: str, error: str, events: list[HubEvent]
    ) -> None:
        self._garbage[reason] += 1
        g = Garbage(at, cut(topic), reason, cut(error))
        self._recent_garbage.append(g)
        events.append(HubEvent(at, "garbage", f"{reason} on {g.topic}: {g.error}"))

    # --- reading ---

    def nodes(self) -> list[NodeView]:
        with self._lock:
            return [n.copy() for _, n in sorted(self._nodes.items())]

    def alerts(self, limit: int | None = None) -> list[AlertRecord]:
        """Newest first (by arrival at the hub)."""
        with self._lock:
            return self._alerts.latest(limit)

    def alert(self, alert_id: str) -> AlertRecord | None:
        with self._lock:
            return self._alerts.get(alert_id)

    def pending(self) -> list[AlertRecord]:
        """Alerts not yet acked, oldest first."""
        with self._lock:
            return self._alerts.pending()

    def objects(self, limit: int | None = None, node: str | None = None) -> list[ObjectRecord]:
        """Tracked objects, newest first (by their first message at the hub); of one node or
        of all."""
        with self._lock:
            return self._objects.latest(limit, node)

    def object(self, event_id: str) -> ObjectRecord | None:
        with self._lock:
            return self._objects.get(event_id)

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
            recs = self._alerts.records()
            nodes = [replace(n) for n in self._nodes.values()]
            garbage = dict(self._garbage)
            forgotten, ignored = self._alerts.forgotten, self._ignored
            objects = self._objects.counts()
        out = alert_figures(recs)
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
        out.update(camera_figures(nodes), **self.clips.counts())
        return out
