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

On a full card: a message the broker took whose row cannot be deleted is never handed out
again, in this run or the next: it is remembered in memory and in `backlog.sent`
(drivers/fullcard.py, written in place; up to MAX_UNDELETED, past that nothing more is
handed out), and the delete is tried again until the card takes it. A message that cannot
be stored is sent live with the next number of its class (`live_seq`), recorded first in
`backlog.seq` (written in place too) so that no number is used twice, across restarts.
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

from drivers.fullcard import InPlaceRecord, SeqReserve, open_store

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
MAX_UNDELETED = 1000  # messages sent whose rows the card would not let go, remembered
RESERVE = 100  # numbers per class reserved on the card at a time while sending live


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
        self._db = _open(path)
        self._count = {k: 0 for k in Priority}
        self._stored = {k: 0 for k in Priority}  # last number in the seqs table
        try:
            for priority, n in self._db.execute(
                    "SELECT klass, COUNT(*) FROM messages GROUP BY klass"):
                self._count[Priority(priority)] = n
            for priority, last in self._db.execute("SELECT klass, last FROM seqs"):
                self._stored[Priority(priority)] = last
        except sqlite3.Error as e:
            self._db.close()
            raise BacklogError(f"cannot read {path}: {e}") from e
        self._reserve = SeqReserve(path.with_suffix(".seq"), len(Priority), ahead=RESERVE)
        if self._reserve.error:
            log.error("%s: events sent live may reuse sequence numbers after a restart",
                      self._reserve.error)
        self._last = {k: max(self._stored[k], self._reserve.values[k - 1]) for k in Priority}
        self._sent = InPlaceRecord(path.with_suffix(".sent"), 1 + MAX_UNDELETED)
        self._undeleted: dict[int, Priority] = {}  # sent, but the row would not go
        self._sent_unsaved = False  # _undeleted has changed since backlog.sent was written
        self._load_sent()

    def _load_sent(self) -> None:
        """Rows the last run sent but could not delete: they stay out of the sending order."""
        if self._sent.error:
            log.error("%s: after a restart on a full card, messages already sent may be sent "
                      "once more", self._sent.error)
        n = min(self._sent.values[0], MAX_UNDELETED)
        kept = {v >> 2: v & 3 for v in self._sent.values[1:1 + n]}
        try:
            present = [r for (r,) in self._db.execute(
                "SELECT rowid FROM messages "  # noqa: S608 (placeholders only)
                f"WHERE rowid IN ({','.join('?' * len(kept))})", tuple(kept))]
        except sqlite3.Error as e:
            self._db.close()
            raise BacklogError(f"cannot read {self.path}: {e}") from e
        self._undeleted = {r: Priority(kept[r]) for r in present if kept[r] in (1, 2)}

    def put(self, priority: Priority, topic: str, build: Callable[[int], bytes], *,
            created: float | None = None) -> int:
        """Store a message; `build(seq)` makes its payload with the class's next sequence
        number. `created` (unix time, default now) is what thinning goes by. Returns the
        seq. Raises BacklogError if it is not stored."""
        with self._lock:
            seq = self._last[priority] + 1
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.execute("INSERT OR REPLACE INTO seqs (klass, last) VALUES (?, ?)",
                                     (int(priority), seq))
                    self._db.execute(
                        "INSERT INTO messages (klass, seq, topic, payload, created) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (int(priority), seq, topic, build(seq),
                         time.time() if created is None else created))
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:  # a failed COMMIT has rolled back already
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as e:
                raise BacklogError(f"cannot write {self.path}: {e}") from e
            self._last[priority] = self._stored[priority] = seq
            self._reserve.settle(priority - 1, 0)  # the table has the last number again
            self._count[priority] += 1
            if sum(self._count.values()) > self.max_messages:
                self._thin()
            return seq

    def live_seq(self, priority: Priority) -> int:
        """The next number of a class, for a message sent without being stored; recorded
        on the card first (reserved ahead) so that no later message gets it again."""
        with self._lock:
            seq = self._last[priority] = self._last[priority] + 1
            if not self._reserve.cover(priority - 1, seq):
                log.error("%s: %s seq %d sent live unrecorded; it may be used again after a "
                          "restart", self._reserve.error, priority.name.lower(), seq)
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
        """Up to `limit` messages in sending order, not counting rows in `skip` nor those
        already sent; none while MAX_UNDELETED sent rows wait to be deleted."""
        with self._lock:
            if len(self._undeleted) >= MAX_UNDELETED:
                return []
            left_out = [*skip, *self._undeleted]
            try:
                rows = self._db.execute(
                    "SELECT rowid, klass, topic, payload FROM messages "  # noqa: S608 (placeholders only)
                    f"WHERE rowid NOT IN ({','.join('?' * len(left_out))}) "
                    "ORDER BY klass, rowid LIMIT ?", (*left_out, limit)).fetchall()
            except sqlite3.Error as e:
                raise BacklogError(f"cannot read {self.path}: {e}") from e
        return [Queued(r[0], Priority(r[1]), r[2], r[3]) for r in rows]

    def done(self, rowid: int, priority: Priority) -> None:
        """The broker has answered for a message: it leaves the store. If the card refuses
        the delete it is never handed out again (`retry_deletes` removes it later)."""
        with self._lock:
            try:
                cur = self._db.execute("DELETE FROM messages WHERE rowid = ?", (rowid,))
            except sqlite3.Error as e:
                self._undeleted[rowid] = priority
                self._sent_unsaved = True  # on the card by `save_sent`, off this thread
                raise BacklogError(f"cannot write {self.path}: {e}") from e
            if cur.rowcount:
                self._count[priority] -= 1

    def save_sent(self) -> None:
        """Put the sent rows that could not be deleted on the card (`backlog.sent`), so
        that a restart does not send them again; a no-op when nothing changed."""
        with self._lock:
            if self._sent_unsaved:
                self._write_sent()

    def _write_sent(self) -> None:
        entries = [rowid << 2 | int(p) for rowid, p in self._undeleted.items()]
        self._sent_unsaved = not self._sent.write([len(entries), *entries])
        if self._sent_unsaved:
            log.error("%s: after a restart, %d messages already sent may be sent once more",
                      self._sent.error, len(entries))

    @property
    def undeleted(self) -> int:
        """Messages sent whose rows wait to be deleted."""
        with self._lock:
            return len(self._undeleted)

    def retry_deletes(self) -> int:
        """Delete the rows of messages already sent; how many went (0 if the card still
        refuses). Raises nothing: the next try is the caller's to schedule."""
        with self._lock:
            if not self._undeleted:
                return 0
            gone = {k: 0 for k in Priority}
            try:
                self._db.execute("BEGIN IMMEDIATE")
                for rowid, priority in self._undeleted.items():
                    gone[priority] += self._db.execute(
                        "DELETE FROM messages WHERE rowid = ?", (rowid,)).rowcount
                self._db.execute("COMMIT")
            except sqlite3.Error as e:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                log.debug("sent messages still not deleted from %s: %s", self.path, e)
                return 0
            for priority, n in gone.items():
                self._count[priority] -= n
            count = len(self._undeleted)
            self._undeleted.clear()
            self._write_sent()
            return count

    def counts(self) -> dict[Priority, int]:
        """Messages waiting to be sent, by class."""
        with self._lock:
            counts = dict(self._count)
            for priority in self._undeleted.values():
                counts[priority] -= 1
            return counts

    def close(self) -> None:
        """Close the store; numbers given live past the table's are written exactly (no
        reservation left over: no gap after a clean restart)."""
        with self._lock:
            if self._sent_unsaved:
                self._write_sent()
            for k in Priority:
                self._reserve.settle(k - 1, self._last[k] if self._last[k] > self._stored[k]
                                     else 0)
            self._db.close()


def _open(path: Path) -> sqlite3.Connection:
    """The store; on a card too full for SQLite's shared-memory file, held by this process
    alone."""
    try:
        db, alone = open_store(path, _SCHEMA, synchronous="NORMAL")
    except (sqlite3.Error, OSError) as e:
        raise BacklogError(f"cannot open {path}: {e}") from None
    if alone:
        log.warning("%s opened for this process alone (%s: card full?)", path, alone)
    return db
