"""Judging an uplink fault scenario and reporting it: one Row per run, with what was lost,
duplicated after dedupe by id or out of order, as a table and as JSON.

- lost: alerts in outbox.sqlite the hub never received (must be 0);
- duplicates after dedupe by id: each seq carries one id, seqs run 1..N with N the
  alerts committed (raw re-deliveries are counted and allowed);
- order: by first arrival of each id, seqs increase; heartbeats' `time` and events'
  `seq` increase within their class.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tests.support.fault_sides import Arrival, HubSide, Pole

# --- judging ---

@dataclass
class Row:
    scenario: str
    presses: int
    sent: int  # alerts committed by the node
    delivered: int  # distinct ids at the hub
    raw_duplicates: int  # re-deliveries before dedupe: allowed, for information
    lost: int
    order_kept: bool
    acked: int  # alerts whose ack reached the node
    kills: int
    connects: int  # connections the node made, all its runs together
    seconds: float
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # worth knowing, not a failure

    @property
    def ok(self) -> bool:
        return not self.problems


def judge(name: str, pole: Pole, hub: HubSide, seconds: float, *, all_presses: bool) -> Row:
    rows = pole.rows()
    alerts = hub.seen("alert")
    stored = {r.id: r.seq for r in rows}
    problems: list[str] = []

    firsts: dict[str, Arrival] = {}
    ids_of_seq: dict[int, set[str]] = {}
    for a in alerts:
        firsts.setdefault(a.key, a)
        ids_of_seq.setdefault(a.seq or 0, set()).add(a.key)
    lost = sorted(stored[i] for i in stored.keys() - firsts.keys())
    if lost:
        problems.append(f"lost: seqs {lost} are in the outbox but never reached the hub")
    if strangers := sorted(firsts.keys() - stored.keys()):
        problems.append(f"the hub got alerts the outbox does not hold: {strangers}")
    if twins := {seq: ids for seq, ids in ids_of_seq.items() if len(ids) > 1}:
        problems.append(f"duplicate after dedupe by id: seqs with several ids {twins}")
    if [r.seq for r in rows] != list(range(1, len(rows) + 1)):
        problems.append(f"outbox seqs are not 1..{len(rows)}: {[r.seq for r in rows]}")
    notes: list[str] = []
    if all_presses and len(rows) < pole.pressed:
        problems.append(f"{pole.pressed} presses but only {len(rows)} alerts committed")
    elif all_presses and len(rows) > pole.pressed:  # the button's debounce, not the uplink
        notes.append(f"{pole.pressed} presses raised {len(rows)} alerts")
    if unacked := [r.seq for r in rows if r.acked_at is None]:
        problems.append(f"the hub's ack never reached the node for seqs {unacked}")

    order_kept = True
    for kind in ("alert", "telemetry", "event"):
        firsts_of_kind: dict[str, float] = {}
        for a in hub.seen(kind):
            firsts_of_kind.setdefault(a.key, a.order)
        order = [o for o in firsts_of_kind.values() if o == o]  # NaN: an unordered event
        broken = next((i for i in range(1, len(order)) if order[i] <= order[i - 1]), None)
        if broken is not None:
            order_kept = False
            problems.append(f"{kind} order broken: {order[broken - 1]} arrived before "
                            f"{order[broken]} (first arrivals: {order})")
    return Row(name, pole.pressed, len(rows), len(firsts.keys() & stored.keys()),
               len(alerts) - len(firsts), len(lost), order_kept,
               sum(r.acked_at is not None for r in rows), pole.kills, pole.connects(),
               round(seconds, 1), problems, notes)


# --- the report ---

COLUMNS = ("scenario", "presses", "sent", "delivered", "raw dups", "lost", "order kept",
           "acked", "kills", "connects", "seconds")


def table(rows: list[Row]) -> str:
    cells = [COLUMNS, *[(r.scenario, str(r.presses), str(r.sent), str(r.delivered),
                         str(r.raw_duplicates), str(r.lost), "yes" if r.order_kept else "NO",
                         str(r.acked), str(r.kills), str(r.connects), f"{r.seconds:.1f}")
                        for r in rows]]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip()
             for c in cells]
    lines += [f"{r.scenario}: {note}" for r in rows for note in r.notes]
    return "\n".join(lines)


def write_json(rows: list[Row]) -> None:
    path = os.environ.get("SAFECITY_FAULT_REPORT")
    if path:
        Path(path).write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
