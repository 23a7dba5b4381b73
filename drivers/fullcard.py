"""What still works on a full card, for the stores that number what they send.

A full data partition refuses every write that needs a new block: an SQLite commit (its
WAL grows), a new file, a rename into place. Two things still work:

- `InPlaceRecord`: a few integers in a small file made while there was room and afterwards
  only overwritten in place (pwrite into blocks the file already holds, then fsync), so it
  takes new values on a full card. Two copies, each with a generation and a checksum: a
  power cut mid-write leaves the other.
- `SeqReserve`, on it: a store that sends a numbered message it could not write down
  first records there that its numbers went that far, so that after a restart it never
  numbers a new message with one the hub has already seen.
- `open_db_on_full_card`: an SQLite store in WAL mode opened without its shared-memory
  file, which a full card cannot create (SQLite writes the -shm's pages when it makes it).
  The connection then holds the database for itself; other programs cannot read it until
  the node stops.
"""

from __future__ import annotations

import os
import sqlite3
import struct
import threading
import zlib
from pathlib import Path
from typing import Literal

from drivers.storage import open_db, write_whole

_MAGIC = b"INPL"
_SECTOR = 512  # each copy starts on its own sector
_HEAD = struct.Struct(">4sQ")  # magic, generation
_CRC = struct.Struct(">I")


class InPlaceRecord:
    """`slots` unsigned integers in a file made at its full size while there is room and
    afterwards only overwritten in place, in two alternating copies."""

    def __init__(self, path: Path, slots: int) -> None:
        self.path = path
        self._n = slots
        self._body = _HEAD.size + 8 * slots
        self._copy = -(-(self._body + _CRC.size) // _SECTOR) * _SECTOR
        self._generation = 0
        self.values = [0] * slots
        self.error = ""  # why the file could not be read, made or written, if so
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            self._make()
            return
        except OSError as e:
            self.error = f"cannot read {path}: {e}"
            return
        copies = (self._parse(data[i:i + self._copy]) for i in (0, self._copy))
        best = max((c for c in copies if c), default=None)
        if best is None:
            self.error = f"{path} holds no valid copy"
            return
        self._generation, self.values = best

    def _parse(self, copy: bytes) -> tuple[int, list[int]] | None:
        if len(copy) < self._body + _CRC.size or copy[:4] != _MAGIC:
            return None
        if _CRC.unpack_from(copy, self._body)[0] != zlib.crc32(copy[:self._body]):
            return None
        _, generation = _HEAD.unpack_from(copy)
        return generation, list(struct.unpack_from(f">{self._n}Q", copy, _HEAD.size))

    def _record(self, generation: int, values: list[int]) -> bytes:
        padded = [*values, *[0] * (self._n - len(values))]
        body = _HEAD.pack(_MAGIC, generation) + struct.pack(f">{self._n}Q", *padded)
        return (body + _CRC.pack(zlib.crc32(body))).ljust(self._copy, b"\0")

    def _make(self) -> None:
        """The file at its full size (generation 1 in the second copy's place)."""
        try:
            write_whole(self.path, bytes(self._copy) + self._record(1, []))
        except OSError as e:
            self.error = f"cannot make {self.path}: {e}"
            return
        self._generation, self.values, self.error = 1, [0] * self._n, ""

    def write(self, values: list[int]) -> bool:
        """Overwrite the older copy with `values` (padded with zeros) and fsync. False if
        the card refused (why in `error`); a file that could not be made is made now."""
        if not self.path.exists():
            self._make()
            if self.error:
                return False
        generation = self._generation + 1
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.pwrite(fd, self._record(generation, values), (generation % 2) * self._copy)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            self.error = f"cannot write {self.path}: {e}"
            return False
        self._generation, self.error = generation, ""
        self.values = [*values, *[0] * (self._n - len(values))]
        return True


class SeqReserve:
    """Counters on the card that say how far a store's numbers may have gone without a
    record of their own (0: not past the store's own record)."""

    def __init__(self, path: Path, counters: int, *, ahead: int) -> None:
        self.ahead = ahead
        self._lock = threading.Lock()
        self._record = InPlaceRecord(path, counters)

    @property
    def values(self) -> list[int]:
        return self._record.values

    @property
    def error(self) -> str:
        return self._record.error

    def cover(self, i: int, last: int) -> bool:
        """Before number `last` of counter `i` leaves without a record in its store: make
        the card say at least that, reserving `ahead` more when less than half of that is
        left, so the numbers after it need no write. False if the card refused."""
        with self._lock:
            v = self.values
            if v[i] - last >= self.ahead // 2:
                return True
            return self._record.write([*v[:i], last + self.ahead, *v[i + 1:]])

    def settle(self, i: int, last: int) -> bool:
        """Counter `i` ends at exactly `last` (a clean stop; 0: the store's own record
        covers every number it gave). False if the card refused."""
        with self._lock:
            v = self.values
            if v[i] == last:
                return True
            return self._record.write([*v[:i], last, *v[i + 1:]])


def open_store(path: Path, schema: str, *, synchronous: Literal["FULL", "NORMAL"],
               timeout_s: float = 0.5) -> tuple[sqlite3.Connection, str]:
    """`drivers.storage.open_db`, or on a card too full for SQLite's shared-memory file, the
    store held by this process alone. Returns the connection and, when alone, why ('').
    Raises sqlite3.Error (or OSError) saying why both failed."""
    try:
        return open_db(path, schema, synchronous=synchronous, timeout_s=timeout_s), ""
    except (sqlite3.Error, OSError) as e:
        why = str(e)  # not the error: its traceback would hold the failed connection open
    try:
        db = open_db_on_full_card(path, schema, synchronous=synchronous, timeout_s=timeout_s)
    except (sqlite3.Error, OSError) as e:
        raise sqlite3.OperationalError(f"{why} (alone: {e})") from None
    return db, why


def open_db_on_full_card(path: Path, schema: str, *,
                         synchronous: Literal["FULL", "NORMAL"],
                         timeout_s: float = 0.5) -> sqlite3.Connection:
    """An existing WAL store opened with no -shm file: exclusive locking, so SQLite keeps
    its WAL index in memory. For when `drivers.storage.open_db` failed on a full card."""
    db = sqlite3.connect(path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA locking_mode=EXCLUSIVE")  # before the first access: no -shm
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.executescript(schema)  # creates nothing in a store that has its tables
    except BaseException:
        db.close()
        raise
    return db
