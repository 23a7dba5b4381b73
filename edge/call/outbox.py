"""The durable outbox: the one place alerts are written to disk.

An alert is committed here (SQLite, WAL, synchronous=FULL: on the card before `add`
returns) before it is published, and it counts as delivered only after the broker's
PUBACK. It survives broker outages, `kill -9` and power cuts. Rows stay after delivery
until the hub's ack and a retention period, so the node can re-send an alert the hub has
not acknowledged and the LED can show whether a call was taken.

Sequence numbers are never used twice, even for an alert sent from memory because the card
refused it: before `add` reports that failure, `outbox.seq` (drivers/fullcard.py, written
in place, so a full card takes it) is made to say how far the numbers went, RESERVE ahead;
the next start continues above it. Once the table again holds the highest number given,
the reservation is dropped, and a clean stop writes the exact last number, so the hub sees
a gap only after a crash while an alert was unsaved, never a number twice.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from contract.payloads import Alert, AlertKind
from drivers.fullcard import SeqReserve, open_store

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,  -- the alert's per-node sequence number
    id           TEXT NOT NULL UNIQUE,
    kind         TEXT NOT NULL,
    topic        TEXT NOT NULL,
    payload      BLOB NOT NULL,
    created_at   REAL NOT NULL,   -- unix time the alert was raised
    delivered_at REAL,            -- broker PUBACK
    acked_at     REAL             -- hub ack
);
CREATE INDEX IF NOT EXISTS alerts_undelivered ON alerts(seq) WHERE delivered_at IS NULL;
CREATE INDEX IF NOT EXISTS alerts_unacked ON alerts(seq) WHERE acked_at IS NULL;
"""

RETENTION_S = 7 * 24 * 3600  # acknowledged alerts are kept this long for inspection
RESERVE = 100  # sequence numbers reserved on the card at a time while alerts go unsaved


class OutboxError(Exception):
    """The outbox could not be written: disk full, read-only, locked, corrupt."""


@dataclass(frozen=True)
class StoredAlert:
    seq: int
    id: str
    kind: str
    topic: str
    payload: bytes
    created_at: float
    delivered_at: float | None
    acked_at: float | None


class Outbox:
    # Short: the only other writer is this process, and a call waits this long on a stuck
    # disk before it is sent from memory instead.
    def __init__(self, path: Path, *, busy_timeout_s: float = 0.5) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = _open(path, busy_timeout_s)
        try:
            row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name='alerts'").fetchone()
        except sqlite3.Error as e:
            self._db.close()
            raise OutboxError(f"cannot read outbox {path}: {e}") from e
        self._reserve = SeqReserve(path.with_suffix(".seq"), 1, ahead=RESERVE)
        if self._reserve.error:
            log.error("%s: an alert sent while the outbox cannot be written may reuse a "
                      "sequence number after a restart", self._reserve.error)
        self._stored_seq = int(row[0]) if row else 0  # highest seq with a row
        self._last_seq = max(self._stored_seq, self._reserve.values[0])

    def next_seq(self) -> int:
        """Reserve the next sequence number (kept even if the write then fails)."""
        with self._lock:
            self._last_seq += 1
            return self._last_seq

    def add(
        self, alert: Alert, topic: str, *,
        delivered_at: float | None = None, acked_at: float | None = None,
    ) -> None:
        """Commit an alert durably. Raises OutboxError if it is not on disk.

        delivered_at/acked_at are for an alert that reached the hub from memory while the
        disk refused it. On failure, every sequence number given so far is first recorded
        as used (see the module's docstring), so the alert may leave from memory."""
        try:
            self._write(
                "INSERT INTO alerts (seq, id, kind, topic, payload, created_at, delivered_at,"
                " acked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (alert.seq, alert.id, str(alert.kind), topic, alert.to_bytes(),
                 alert.time.timestamp(), delivered_at, acked_at),
            )
        except OutboxError:
            with self._lock:
                if not self._reserve.cover(0, self._last_seq):
                    log.error("%s: alert seq %d leaves unrecorded; its number may be used "
                              "again after a restart", self._reserve.error, alert.seq)
            raise
        with self._lock:
            self._stored_seq = max(self._stored_seq, alert.seq)
            if self._stored_seq >= self._last_seq:  # the table has the highest again
                self._reserve.settle(0, 0)

    def mark_delivered(self, seq: int) -> None:
        self._write(
            "UPDATE alerts SET delivered_at = ? WHERE seq = ? AND delivered_at IS NULL",
            (time.time(), seq),
        )

    def mark_acked(self, alert_id: str) -> bool:
        """Record the hub's ack. False if this node never raised that alert."""
        now = time.time()
        with self._lock:
            try:
                cur = self._db.execute(
                    "UPDATE alerts SET acked_at = COALESCE(acked_at, ?), "
                    "delivered_at = COALESCE(delivered_at, ?) WHERE id = ?",
                    (now, now, alert_id),
                )
            except sqlite3.Error as e:
                raise OutboxError(f"cannot record ack in {self.path}: {e}") from e
            return cur.rowcount > 0

    def undelivered(self) -> list[StoredAlert]:
        """Alerts the broker has not accepted yet, oldest first."""
        return self._select("WHERE delivered_at IS NULL ORDER BY seq")

    def unacked(self) -> list[StoredAlert]:
        """Delivered alerts the hub has not acknowledged, oldest first."""
        return self._select("WHERE delivered_at IS NOT NULL AND acked_at IS NULL ORDER BY seq")

    def get(self, alert_id: str) -> StoredAlert | None:
        rows = self._select("WHERE id = ?", (alert_id,))
        return rows[0] if rows else None

    def call_state(self) -> tuple[float | None, float | None]:
        """(raise time of the oldest unacknowledged call, time of the latest call ack)."""
        with self._lock:
            row = self._db.execute(
                "SELECT (SELECT MIN(created_at) FROM alerts WHERE acked_at IS NULL AND kind = ?),"
                "       (SELECT MAX(acked_at) FROM alerts WHERE kind = ?)",
                (AlertKind.CALL.value, AlertKind.CALL.value),
            ).fetchone()
        return row[0], row[1]

    def counts(self) -> tuple[int, int]:
        """(alerts not yet delivered, alerts delivered but not acknowledged)."""
        with self._lock:
            row = self._db.execute(
                "SELECT COALESCE(SUM(delivered_at IS NULL), 0),"
                "       COALESCE(SUM(delivered_at IS NOT NULL AND acked_at IS NULL), 0) "
                "FROM alerts"
            ).fetchone()
        return int(row[0]), int(row[1])

    def prune(self, now: float) -> int:
        """Forget acknowledged alerts past retention; returns how many."""
        with self._lock:
            try:
                cur = self._db.execute(
                    "DELETE FROM alerts WHERE acked_at IS NOT NULL AND acked_at < ?",
                    (now - RETENTION_S,),
                )
            except sqlite3.Error as e:
                raise OutboxError(f"cannot prune {self.path}: {e}") from e
            return cur.rowcount

    def probe(self) -> None:
        """Take and release the write lock without writing: fails if alerts could not be stored."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute("ROLLBACK")
            except sqlite3.Error as e:
                raise OutboxError(f"outbox {self.path} is not writable: {e}") from e

    def close(self) -> None:
        """Close the store; the numbers given, if the table lacks the last, are written
        exactly (no reservation left over: no gap after a clean restart)."""
        with self._lock:
            last = self._last_seq if self._last_seq > self._stored_seq else 0
            self._reserve.settle(0, last)
            self._db.close()

    def _write(self, sql: str, args: tuple[object, ...]) -> None:
        with self._lock:
            try:
                self._db.execute(sql, args)
            except sqlite3.Error as e:
                raise OutboxError(f"cannot write outbox {self.path}: {e}") from e

    def _select(self, where: str, args: tuple[object, ...] = ()) -> list[StoredAlert]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, id, kind, topic, payload, created_at, delivered_at, acked_at "  # noqa: S608 (`where` is one of this module's own clauses)
                f"FROM alerts {where}",
                args,
            ).fetchall()
        return [StoredAlert(*row) for row in rows]


def _open(path: Path, busy_timeout_s: float) -> sqlite3.Connection:
    """The store; on a card too full for SQLite's shared-memory file, held by this process
    alone (the alert path must start on a full card)."""
    try:
        db, alone = open_store(path, _SCHEMA, synchronous="FULL", timeout_s=busy_timeout_s)
    except (sqlite3.Error, OSError) as e:
        raise OutboxError(f"cannot open outbox {path}: {e}") from None
    if alone:
        log.warning("outbox %s opened for this process alone (%s: card full?); other "
                    "programs cannot read it until the node stops", path, alone)
    return db
