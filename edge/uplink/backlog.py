"""Store-and-forward for events and telemetry, behind the alerts.

Alerts have their own outbox (edge/call/outbox.py) and go out the moment they are raised.
Vision events and heartbeats are written here (SQLite, WAL: they survive `kill -9`; a
power cut may lose the last second, which only alerts must not) and the forwarder thread
(edge/uplink/forwarder.py) hands them to the uplink in priority order: nothing while an
alert is waiting for the broker, then events, then telemetry, each class in the order it
was written, at most WINDOW at a time. A message leaves the store when the broker has
acknowledged it.

The store is bounded by `backlog.max_messages`. Over the bound, telemetry is thinned to
one heartbeat per `backlog.telemetry_keep_s` (the hub still sees how the outage went),
then the oldest heartbeats go; events are never dropped (the bound is exceeded and said
so in telemetry rather than lose one).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from drivers.storage import open_db

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    rowid   INTEGER PRIMARY KEY AUTOINCREMENT,
    klass   INTEGER NOT NULL,   -- 1 event, 2 telemetry: sent in this order
    seq     INTEGER NOT NULL,   -- per class, in the payload where the class has one
    topic   TEXT NOT NULL,
    payload BLOB NOT NULL,
    created REAL NOT NULL       -- unix time
);
CREATE INDEX IF NOT EXISTS messages_order ON messages(klass, rowid);
CREATE TABLE IF NOT EXISTS seqs (klass INTEGER PRIMARY KEY, last INTEGER NOT NULL);
"""


class Priority(IntEnum):
    """Which stored messages go first after an outage: events, then telemetry. (The column
    on disk keeps its old name, `klass`, so a pole's stored backlog survives the update.)"""

    EVENT = 1
    TELEMETRY = 2


class BacklogError(Exception):
    """The store cannot be written (disk full, read-only, corrupt)."""


@dataclass(frozen=True)
class Queued:
    rowid: int
    priority: Priority
    topic: str
    payload: bytes


class Backlog:
    def __init__(self, path: Path, *, max_messages: int, telemetry_keep_s: float) -> None:
        self.path = path
        self.max_messages = max_messages
        self.keep_s = telemetry_keep_s
        self.thinned = 0  # heartbeats dropped to stay in bound, since start
        self._lock = threading.Lock()
        try:
            self._db = open_db(path, _SCHEMA, synchronous="NORMAL")
            self._count = {k: 0 for k in Priority}
            for priority, n in self._db.execute(
                    "SELECT klass, COUNT(*) FROM messages GROUP BY klass"):
                self._count[Priority(priority)] = n
        except (sqlite3.Error, OSError) as e:
            raise BacklogError(f"cannot open {path}: {e}") from e

    def put(self, priority: Priority, topic: str, build: Callable[[int], bytes], *,
            created: float | None = None) -> int:
        """Store a message; `build(seq)` makes its payload with the class's next sequence
        number. `created` (unix time, default now) is what thinning goes by. Returns the
        seq. Raises BacklogError if it is not stored."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    row = self._db.execute("SELECT last FROM seqs WHERE klass = ?",
                                           (int(priority),)).fetchone()
                    seq = (row[0] if row else 0) + 1
                    self._db.execute("INSERT OR REPLACE INTO seqs (klass, last) VALUES (?, ?)",
                                     (int(priority), seq))
                    self._db.execute(
                        "INSERT INTO messages (klass, seq, topic, payload, created) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (int(priority), seq, topic, build(seq),
                         time.time() if created is None else created))
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as e:
                raise BacklogError(f"cannot write {self.path}: {e}") from e
            self._count[priority] += 1
            if sum(self._count.values()) > self.max_messages:
                self._thin()
            return seq

    def _thin(self) -> None:
        """Over the bound: one heartbeat per keep_s, then the oldest heartbeats."""
        tele = int(Priority.TELEMETRY)
        before = self._count[Priority.TELEMETRY]
        count = "SELECT COUNT(*) FROM messages WHERE klass = ?"
        try:
            self._db.execute(
                "DELETE FROM messages WHERE klass = ? AND rowid NOT IN (SELECT MIN(rowid) "
                "FROM messages WHERE klass = ? GROUP BY CAST(created / ? AS INTEGER))",
                (tele, tele, self.keep_s))
            left = self._db.execute(count, (tele,)).fetchone()[0]
            over = self._count[Priority.EVENT] + left - self.max_messages
            if over > 0:
                self._db.execute(
                    "DELETE FROM messages WHERE rowid IN (SELECT rowid FROM messages "
                    "WHERE klass = ? ORDER BY rowid LIMIT ?)", (tele, over))
                left = self._db.execute(count, (tele,)).fetchone()[0]
        except sqlite3.Error as e:
            log.error("cannot thin %s: %s", self.path, e)
            return
        self._count[Priority.TELEMETRY] = left
        dropped = before - left
        self.thinned += dropped
        if self._total() > self.max_messages:
            log.warning("%d events waiting for the hub, over outbox.max_messages (%d): all "
                        "kept", self._count[Priority.EVENT], self.max_messages)
        elif dropped:
            log.info("store-and-forward full: %d heartbeats thinned out", dropped)

    def _total(self) -> int:
        return sum(self._count.values())

    def next(self, limit: int, skip: set[int]) -> list[Queued]:
        """Up to `limit` messages in sending order, not counting rows in `skip`."""
        with self._lock:
            try:
                rows = self._db.execute(
                    "SELECT rowid, klass, topic, payload FROM messages ORDER BY klass, rowid "
                    "LIMIT ?", (limit + len(skip),)).fetchall()
            except sqlite3.Error as e:
                raise BacklogError(f"cannot read {self.path}: {e}") from e
        out = [Queued(r[0], Priority(r[1]), r[2], r[3]) for r in rows if r[0] not in skip]
        return out[:limit]

    def done(self, rowid: int, priority: Priority) -> None:
        with self._lock:
            try:
                cur = self._db.execute("DELETE FROM messages WHERE rowid = ?", (rowid,))
            except sqlite3.Error as e:
                raise BacklogError(f"cannot write {self.path}: {e}") from e
            if cur.rowcount:
                self._count[priority] -= 1

    def counts(self) -> dict[Priority, int]:
        with self._lock:
            return dict(self._count)

    def close(self) -> None:
        with self._lock:
            self._db.close()
