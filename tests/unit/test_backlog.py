"""The store-and-forward queue for events and telemetry: order, priorities, the bound."""

from __future__ import annotations

import json
from pathlib import Path

from edge.uplink.backlog import Backlog, Priority


def payload(priority: Priority, n: int) -> bytes:
    return json.dumps({"class": priority.name, "n": n}).encode()


def drain(b: Backlog, limit: int = 1000) -> list[tuple[Priority, int]]:
    rows = b.next(limit, set())
    return [(r.priority, json.loads(r.payload)["seq"]) for r in rows]


def put(b: Backlog, priority: Priority, created: float | None = None) -> int:
    return b.put(priority, f"poles/p/{priority.name.lower()}",
                 lambda seq: json.dumps({"seq": seq}).encode(), created=created)


def test_events_go_before_telemetry_each_in_the_order_written(tmp_path: Path) -> None:
    b = Backlog(tmp_path / "b.sqlite", max_messages=1000, telemetry_keep_s=60)
    for i in range(10):
        put(b, Priority.TELEMETRY if i % 3 else Priority.EVENT)
    got = drain(b)
    assert got == [(Priority.EVENT, s) for s in (1, 2, 3, 4)] + \
                  [(Priority.TELEMETRY, s) for s in (1, 2, 3, 4, 5, 6)]
    assert b.counts() == {Priority.EVENT: 4, Priority.TELEMETRY: 6}


def test_a_window_skips_messages_in_flight_and_done_removes_them(tmp_path: Path) -> None:
    b = Backlog(tmp_path / "b.sqlite", max_messages=1000, telemetry_keep_s=60)
    for _ in range(5):
        put(b, Priority.EVENT)
    first = b.next(2, set())
    assert [json.loads(r.payload)["seq"] for r in first] == [1, 2]
    more = b.next(2, {r.rowid for r in first})
    assert [json.loads(r.payload)["seq"] for r in more] == [3, 4]
    for r in first:
        b.done(r.rowid, r.priority)
    assert [s for _, s in drain(b)] == [3, 4, 5]
    assert b.counts()[Priority.EVENT] == 3


def test_sequence_numbers_and_messages_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    b = Backlog(path, max_messages=1000, telemetry_keep_s=60)
    for _ in range(3):
        put(b, Priority.EVENT)
    b.done(b.next(1, set())[0].rowid, Priority.EVENT)
    b.close()
    b = Backlog(path, max_messages=1000, telemetry_keep_s=60)
    assert b.counts() == {Priority.EVENT: 2, Priority.TELEMETRY: 0}
    assert put(b, Priority.EVENT) == 4  # numbering goes on: the hub sees no reuse
    assert [s for _, s in drain(b)] == [2, 3, 4]


def test_over_the_bound_telemetry_is_thinned_to_one_per_period(tmp_path: Path) -> None:
    b = Backlog(tmp_path / "b.sqlite", max_messages=100, telemetry_keep_s=60)
    t0 = 1_800_000_000.0  # a minute boundary
    for i in range(100):  # one heartbeat every 10 s for 1000 s: 17 minutes
        put(b, Priority.TELEMETRY, created=t0 + 10 * i)
    assert b.counts()[Priority.TELEMETRY] == 100 and b.thinned == 0
    put(b, Priority.TELEMETRY, created=t0 + 1000)
    kept = drain(b)
    # one per started minute: minutes 0..16, each the first heartbeat written in it
    assert len(kept) == 17
    assert [s for _, s in kept][:3] == [1, 7, 13]
    assert b.thinned == 101 - 17


def test_events_are_never_dropped_even_over_the_bound(tmp_path: Path) -> None:
    b = Backlog(tmp_path / "b.sqlite", max_messages=100, telemetry_keep_s=60)
    t0 = 1_800_000_000.0
    for i in range(50):
        put(b, Priority.TELEMETRY, created=t0 + i)  # all in one minute
    for _ in range(150):
        put(b, Priority.EVENT)
    counts = b.counts()
    assert counts[Priority.EVENT] == 150
    assert counts[Priority.TELEMETRY] == 0  # thinned to one, then dropped to make room
    assert [s for k, s in drain(b) if k == Priority.EVENT] == list(range(1, 151))
