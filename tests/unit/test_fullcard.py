"""What still works on a full card: counters overwritten in place, and a WAL store opened
without the shared-memory file a full card cannot make. The card is a real small tmpfs,
filled to the last byte."""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.fullcard import SeqReserve, open_db_on_full_card
from drivers.storage import open_db
from tests.support import disks


@pytest.fixture
def card(tmp_path: Path) -> Iterator[Path]:
    with disks.tmpfs(tmp_path / "card", "1m") as mount:
        yield mount


def fill(card: Path) -> None:
    fd = os.open(card / "ballast.bin", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (64 * 1024, 4096, 1):
            try:
                while os.write(fd, bytes(size)):
                    pass
            except OSError as e:
                assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)


def test_counters_are_kept_and_reserved_ahead_only_when_half_used(tmp_path: Path) -> None:
    path = tmp_path / "s.seq"
    r = SeqReserve(path, 2, ahead=10)
    assert r.values == [0, 0] and not r.error
    assert r.cover(1, 3) and r.values == [0, 13]
    before = path.read_bytes()
    assert r.cover(1, 8)  # 5 left of 10: no write
    assert path.read_bytes() == before
    assert r.cover(1, 9) and r.values == [0, 19]
    assert SeqReserve(path, 2, ahead=10).values == [0, 19]
    assert r.settle(1, 9) and SeqReserve(path, 2, ahead=10).values == [0, 9]


def test_a_torn_write_leaves_the_copy_before_it(tmp_path: Path) -> None:
    path = tmp_path / "s.seq"
    r = SeqReserve(path, 1, ahead=10)
    r.cover(0, 1)  # 11, in one copy
    r.cover(0, 7)  # 17, in the other
    data = path.read_bytes()
    torn = {}
    for offset in (0, 512):
        copy = bytearray(data)
        copy[offset + 14] ^= 0xFF  # a byte of the value, as a power cut mid-write leaves it
        path.write_bytes(bytes(copy))
        torn[offset] = SeqReserve(path, 1, ahead=10).values[0]
    assert sorted(torn.values()) == [11, 17]  # either copy torn: the other one is read
    path.write_bytes(bytes(1024))
    broken = SeqReserve(path, 1, ahead=10)
    assert broken.error and broken.values == [0]


def test_on_a_full_card_the_counters_still_take_new_values(card: Path) -> None:
    r = SeqReserve(card / "s.seq", 1, ahead=100)  # made while there is room
    fill(card)
    with pytest.raises(OSError, match="No space"):
        (card / "new").write_bytes(b"x" * 8192)
    assert r.cover(0, 5), r.error
    assert r.settle(0, 5)
    assert SeqReserve(card / "s.seq", 1, ahead=100).values == [5]
    late = SeqReserve(card / "late.seq", 1, ahead=100)  # too late to make one
    assert late.error and not late.cover(0, 1)


def test_a_store_closed_cleanly_opens_on_a_full_card_for_this_process_alone(card: Path) -> None:
    schema = "CREATE TABLE IF NOT EXISTS t (x INTEGER);"
    db = open_db(card / "s.sqlite", schema, synchronous="FULL")
    db.execute("INSERT INTO t VALUES (1)")
    db.close()  # the -wal and -shm files go with the last connection
    fill(card)
    with pytest.raises(sqlite3.OperationalError):
        open_db(card / "s.sqlite", schema, synchronous="FULL")
    db = open_db_on_full_card(card / "s.sqlite", schema, synchronous="FULL")
    assert db.execute("SELECT x FROM t").fetchall() == [(1,)]
    with pytest.raises(sqlite3.OperationalError, match="full"):
        db.execute("INSERT INTO t VALUES (2)")
    (card / "ballast.bin").unlink()
    db.execute("INSERT INTO t VALUES (2)")  # room again: writes go on in the same connection
    assert db.execute("SELECT COUNT(*) FROM t").fetchone() == (2,)
    db.close()
