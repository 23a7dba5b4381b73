"""The store-and-forward queue for events and telemetry: order, priorities, the bound."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from edge.uplink import backlog
from edge.uplink.backlog import Backlog, BacklogError, Priority


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


def refusing(path: Path) -> sqlite3.Connection:
    """Another connection holding the write lock: the card refuses the backlog's writes."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    return other


def test_a_sent_message_the_card_will_not_delete_is_not_handed_out_again(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    b = Backlog(path, max_messages=1000, telemetry_keep_s=60)
    for _ in range(3):
        put(b, Priority.TELEMETRY)
    [first] = b.next(1, set())
    other = refusing(path)
    try:
        with pytest.raises(BacklogError):
            b.done(first.rowid, first.priority)
        # What the forwarder asks next never includes it, however often it asks.
        for _ in range(3):
            assert [json.loads(r.payload)["seq"] for r in b.next(10, set())] == [2, 3]
        assert b.counts()[Priority.TELEMETRY] == 2 and b.undeleted == 1
        assert b.retry_deletes() == 0  # the card still refuses
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert b.retry_deletes() == 1 and b.undeleted == 0
    assert [s for _, s in drain(b)] == [2, 3]
    assert b.counts()[Priority.TELEMETRY] == 2


def test_after_a_restart_a_sent_message_whose_row_stayed_is_not_sent_again(
        tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    b = Backlog(path, max_messages=1000, telemetry_keep_s=60)
    for _ in range(2):
        put(b, Priority.EVENT)
    [first] = b.next(1, set())
    other = refusing(path)
    try:
        with pytest.raises(BacklogError):
            b.done(first.rowid, first.priority)
        b.save_sent()  # as the forwarder does on its next pass
        crashed = Backlog(path, max_messages=1000, telemetry_keep_s=60)  # b never closed
        assert [json.loads(r.payload)["seq"] for r in crashed.next(10, set())] == [2]
        crashed.close()
        b.close()  # stopped while the card still refused the delete
        again = Backlog(path, max_messages=1000, telemetry_keep_s=60)
        assert [json.loads(r.payload)["seq"] for r in again.next(10, set())] == [2]
        assert again.counts()[Priority.EVENT] == 1
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert again.retry_deletes() == 1
    again.close()
    assert Backlog(path, max_messages=1000, telemetry_keep_s=60).undeleted == 0


def test_past_the_bound_of_undeleted_rows_nothing_more_is_handed_out(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backlog, "MAX_UNDELETED", 1)
    path = tmp_path / "b.sqlite"
    b = Backlog(path, max_messages=1000, telemetry_keep_s=60)
    put(b, Priority.EVENT)
    put(b, Priority.EVENT)
    [first] = b.next(1, set())
    other = refusing(path)
    try:
        with pytest.raises(BacklogError):
            b.done(first.rowid, first.priority)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert b.next(10, set()) == []  # held: nothing can go twice
    b.retry_deletes()
    assert [s for _, s in drain(b)] == [2]


def test_numbers_given_live_are_not_given_again_after_a_crash_or_a_clean_stop(
        tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    b = Backlog(path, max_messages=1000, telemetry_keep_s=60)
    assert [put(b, Priority.EVENT) for _ in range(2)] == [1, 2]
    # The store refused these: they went live, numbered on from the store's.
    assert [b.live_seq(Priority.EVENT) for _ in range(2)] == [3, 4]
    assert put(b, Priority.EVENT) == 5
    assert b.live_seq(Priority.EVENT) == 6
    crashed = Backlog(path, max_messages=1000, telemetry_keep_s=60)  # b never closed
    assert put(crashed, Priority.EVENT) > 6  # a gap, never a number the hub has seen
    crashed.close()
    path = tmp_path / "c.sqlite"
    b = Backlog(path, max_messages=1000, telemetry_keep_s=60)
    put(b, Priority.EVENT)
    assert b.live_seq(Priority.EVENT) == 2
    b.close()
    b = Backlog(path, max_messages=1000, telemetry_keep_s=60)
    assert put(b, Priority.EVENT) == 3  # a clean stop wrote exactly where live numbers ended
