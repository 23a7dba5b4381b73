"""The alerts book: one AlertRecord per alert id however many copies of it arrived, in the
order first received (the oldest forgotten past MAX_ALERTS), with when the hub's ack was
taken, and each node's sequence numbers, to count the ones never received (possible loss).
Also the alert figures of the hub's summary. No locking: HubState holds its lock around
every call.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from contract.payloads import Alert
from hub.events import HubEvent
from hub.stats import ms_between, percentile

MAX_ALERTS = 100_000  # past this the oldest alerts are forgotten, so a flood cannot exhaust memory


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
        return ms_between(self.received_at, self.raised_at)

    @property
    def ack_latency_ms(self) -> float | None:
        return None if self.acked_at is None else ms_between(self.acked_at, self.received_at)


@dataclass
class _Seqs:
    seen: set[int]
    low: int
    high: int

    def add(self, seq: int) -> int:
        self.seen.add(seq)
        self.low, self.high = min(self.low, seq), max(self.high, seq)
        return self.high - self.low + 1 - len(self.seen)


class AlertBook:
    """Every alert received, by id, and every node's seqs. Readers get copies."""

    def __init__(self) -> None:
        self._alerts: dict[str, AlertRecord] = {}  # insertion order = order first received
        self._seqs: dict[str, _Seqs] = {}  # by node
        self.forgotten = 0  # alerts dropped past MAX_ALERTS

    def receive(self, msg: Alert, at: datetime, events: list[HubEvent]) -> int | None:
        """Take one copy of an alert, received at `at`, and add the line it is worth to
        events. Return the count of its node's seqs now missing, or None if unchanged."""
        rec = self._alerts.get(msg.id)
        if rec is not None:
            rec.copies += 1
            state = "acked before, re-acking" if rec.acked else "not acked yet"
            events.append(HubEvent(
                at, "duplicate", f"{rec.node} seq {rec.seq} copy {rec.copies} ({state})",
                rec.node, rec.alert_id,
            ))
            return None
        rec = AlertRecord(
            alert_id=msg.id, node=msg.node, seq=msg.seq, kind=str(msg.kind), source=msg.source,
            site=msg.site, clock_synced=msg.clock_synced, raised_at=msg.time, received_at=at,
        )
        self._alerts[msg.id] = rec
        if len(self._alerts) > MAX_ALERTS:
            del self._alerts[next(iter(self._alerts))]
            self.forgotten += 1
        missing = None
        seqs = self._seqs.get(msg.node)
        if seqs is None:
            self._seqs[msg.node] = _Seqs({msg.seq}, msg.seq, msg.seq)
        else:
            missing = seqs.add(msg.seq)
        events.append(HubEvent(
            at, "alert", f"{rec.node} seq {rec.seq} {rec.kind} from {rec.source}, "
            f"{rec.latency_ms:.0f} ms after it was raised", rec.node, rec.alert_id,
        ))
        return missing

    def ack(self, alert_id: str, at: datetime, events: list[HubEvent]) -> bool:
        """Record that the broker took our ack at `at`; the first ack time is kept, and told
        as a line in events. False if the alert is unknown."""
        rec = self._alerts.get(alert_id)
        if rec is None:
            return False
        if rec.acked_at is None:
            rec.acked_at = at
            events.append(HubEvent(
                at, "acked", f"{rec.node} seq {rec.seq} acked "
                f"{rec.ack_latency_ms:.0f} ms after it arrived", rec.node, alert_id,
            ))
        return True

    def latest(self, limit: int | None = None) -> list[AlertRecord]:
        """Copies, newest first (by arrival at the hub)."""
        newest = itertools.islice(reversed(self._alerts.values()), limit)
        return [replace(a) for a in newest]

    def get(self, alert_id: str) -> AlertRecord | None:
        rec = self._alerts.get(alert_id)
        return None if rec is None else replace(rec)

    def pending(self) -> list[AlertRecord]:
        """Copies of the alerts not yet acked, oldest first."""
        return [replace(a) for a in self._alerts.values() if not a.acked]

    def records(self) -> list[AlertRecord]:
        """The live records, oldest first, for the summary."""
        return list(self._alerts.values())


def alert_figures(recs: Sequence[AlertRecord]) -> dict[str, Any]:
    """The summary's alert figures: alerts_unique, copies, duplicates, acked, pending,
    latency_{p50,p99,max}_ms and ack_latency_{p50,p99,max}_ms (None when there is no data)."""
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
    return out
