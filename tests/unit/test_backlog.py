"""The store-and-forward queue for events and telemetry: order, priorities, the bound."""

from __future__ import annotations

import json
from pathlib import Path

from edge.backlog import Backlog, Klass


def payload(klass: Klass, n: int) -> bytes:
    return json.dumps({"class": klass.name, "n": n}).encode()


def drain(b: Backlog, limit: int = 1000) -> list[tuple[Klass, int]]:
    rows = b.next(limit, set())
    return [(r.klass, json.loads(r.payload)["seq"]) for r in rows]


def put(b: Backlog, klass: Klass, created: float | None = None) -> int:
    return b.put(klass, f"poles/p/{klass.name.lower()}",
                 lambda seq: json.dumps({"seq": seq}).encode(), created=created)


def test_events_go_before_telemetry_each_in_the_order_written(tmp_path: Path) -> None:
    b = Backlog(tmp_path / "b.sqlite", max_messages=1000, telemetry_keep_s=60)
    for i in range(10):
        put(b, Klass.TELEMETRY if i % 3 else Klass.EVENT)
    got = drain(b)
    assert got == [(Klass.EVENT, s) for s in (1, 2, 3, 4)] + \
                  [(Klass.TELEMETRY, s) for s in (1, 2, 3, 4, 5, 6)]
    assert b.counts() == {Klass.EVENT: 4, Klass.TELEMETRY: 6}


def test_a_window_skips_messages_in_flight_and_done_removes_them(tmp_path: Path) -> None:
    b = Backlog(tmp_path / "b.sqlite", max_messages=1000, telemetry_keep_s=60)
    for _ in range(5):
        put(b, Klass.EVENT)
    first = b.next(2, set())
    assert [json.loads(r.payload)["seq"] for r in first] == [1, 2]
    more = b.next(2, {r.rowid for r in first})
    assert [json.loads(r.payload)["seq"] for r in more] == [3, 4]
    for r in first:
        b.done(r.rowid, r.klass)
    assert [s for _, s in drain(b)] == [3, 4, 5]
    assert b.counts()[Klass.EVENT] == 3


def test_sequence_numbers_and_messages_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    b = Backlog(path, max_messages=1000, telemetry_keep_s=60)
    for _ in range(3):
        put(b, Klass.EVENT)
    b.done(b.next(1, set())[0].rowid, Klass.EVENT)
    b.close()
    b = Backlog(path, max_messages=1000, telemetry_keep_s=60)
    assert b.counts() == {Klass.EVENT: 2, Klass.TELEMETRY: 0}
    assert put(b, Klass.EVENT) == 4  # numbering goes on: the hub sees no reuse
    assert [s for _, s in drain(b)] == [2, 3, 4]


def test_over_the_bound_telemetry_is_thinned_to_one_per_period(tmp_path: Path) -> None:
    b = Backlog(tmp_path / "b.sqlite", max_messages=100, telemetry_keep_s=60)
    t0 = 1_800_000_000.0  # a minute boundary
    for i in range(100):  # one heartbeat every 10 s for 1000 s: 17 minutes
        put(b, Klass.TELEMETRY, created=t0 + 10 * i)
    assert b.counts()[Klass.TELEMETRY] == 100 and b.thinned == 0
    put(b, Klass.TELEMETRY, created=t0 + 1000)
    kept = drain(b)
    # one per started minute: minutes 0..16, each the first heartbeat written in it
    assert len(kept) == 17
    assert [s for _, s in kept][:3] == [1, 7, 13]
    assert b.thinned == 101 - 17


def test_events_are_never_dropped_even_over_the_bound(tmp_path: Path) -> None:
    b = Backlog(tmp_path / "b.sqlite", max_messages=100, telemetry_keep_s=60)
    t0 = 1_800_000_000.0
    for i in range(50):
        put(b, Klass.TELEMETRY, created=t0 + i)  # all in one minute
    for _ in range(150):
        put(b, Klass.EVENT)
    counts = b.counts()
    assert counts[Klass.EVENT] == 150
    assert counts[Klass.TELEMETRY] == 0  # thinned to one, then dropped to make room
    assert [s for k, s in drain(b) if k == Klass.EVENT] == list(range(1, 151))
