"""The recording index: one SQLite file listing every segment on disk and every pin on footage.

A segment row is written only after its file is complete and synced, so a row always names
a whole, hashed file; the file being written at a power cut has no row yet and is repaired
or dropped on the next start (`reconcile`). Pins hold a time window of footage (one camera
or all) for an alert, an event or a legal hold; a segment overlapping an active pin is never
evicted. Times are unix seconds (wall clock); paths are relative to the recordings folder.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from drivers.storage import open_db

INDEX_FILE = "index.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS segments (
    id      INTEGER PRIMARY KEY,
    camera  TEXT NOT NULL,
    start   REAL NOT NULL,    -- wall time of the segment's first (key)frame
    end     REAL NOT NULL,    -- wall time the last frame ends
    path    TEXT NOT NULL UNIQUE,
    bytes   INTEGER NOT NULL,
    sha256  TEXT NOT NULL     -- of the file as written
);
CREATE INDEX IF NOT EXISTS segments_by_camera ON segments(camera, start);
CREATE INDEX IF NOT EXISTS segments_by_start ON segments(start);
CREATE TABLE IF NOT EXISTS pins (
    id        INTEGER PRIMARY KEY,
    camera    TEXT,            -- NULL: every camera of the node
    start     REAL NOT NULL,
    end       REAL NOT NULL,
    category  TEXT NOT NULL,
    reason    TEXT NOT NULL,   -- what asked for it: an alert or event id, a case number
    created   REAL NOT NULL,
    expires   REAL             -- NULL: until released (legal hold)
);
CREATE INDEX IF NOT EXISTS pins_by_end ON pins(end);
"""

# A segment [s.start, s.end) overlaps a pin [p.start, p.end) of its camera that has not expired.
_PINNED = """EXISTS (SELECT 1 FROM pins p
    WHERE (p.camera IS NULL OR p.camera = s.camera) AND p.start < s.end AND p.end > s.start
      AND (p.expires IS NULL OR p.expires > :now))"""


class Category(StrEnum):
    """Why footage is kept; each has its own retention (config `recording.retention_days`)."""

    CONTINUOUS = "continuous"  # not pinned: the ring buffer
    EVENT = "event"            # around a vision event
    ALERT = "alert"            # around a call-button press or another alert
    LEGAL_HOLD = "legal_hold"  # held on request until released


class RecordingIndexError(RuntimeError):
    """The index could not be read or written (disk full, read-only, corrupt)."""


@dataclass(frozen=True, slots=True)
class Segment:
    """One recorded file: MPEG-TS, H.264, starting on a keyframe."""

    id: int
    camera: str
    start: float
    end: float
    path: str
    bytes: int
    sha256: str

    @property
    def duration_s(self) -> float:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class Pin:
    id: int
    camera: str | None
    start: float
    end: float
    category: Category
    reason: str
    created: float
    expires: float | None


@dataclass(frozen=True, slots=True)
class Usage:
    """What the recordings hold: all segments, and the part no eviction may touch now."""

    segments: int
    bytes: int
    pinned_segments: int
    pinned_bytes: int
    oldest: float | None
    newest: float | None


def _segment(row: tuple[object, ...]) -> Segment:
    return Segment(*row)  # type: ignore[arg-type]


# Queries here are built from these constants alone (hence the S608 notes), never from input.
_COLUMNS = "s.id, s.camera, s.start, s.end, s.path, s.bytes, s.sha256"


class SegmentIndex:
    """The index of one recordings folder (`root`); the database lives at `root/index.sqlite`.

    Several processes may use it at once (each camera worker writes its own segments, the
    main process adds pins, an export reads); SQLite's WAL and a busy timeout serialise them.
    """

    def __init__(self, root: Path, *, busy_timeout_s: float = 5.0) -> None:
        self.root = root
        self.path = root / INDEX_FILE
        self._lock = threading.Lock()
        try:
            self._db = open_db(self.path, _SCHEMA, synchronous="FULL", timeout_s=busy_timeout_s)
        except (OSError, sqlite3.Error) as e:
            raise RecordingIndexError(f"cannot open the recording index {self.path}: {e}") from e

    def file(self, segment: Segment) -> Path:
        """Where the segment's file is."""
        return self.root / segment.path

    def _run(self, sql: str, params: Iterable[object] | dict[str, object] = ()
             ) -> list[tuple[object, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()  # type: ignore[arg-type]
            except sqlite3.Error as e:
                raise RecordingIndexError(f"recording index {self.path}: {e}") from e

    # --- segments ---

    def add(self, camera: str, start: float, end: float, path: str, size: int,
            sha256: str) -> Segment:
        """Record a complete segment file (call after it is written and synced)."""
        rows = self._run(
            "INSERT INTO segments (camera, start, end, path, bytes, sha256) "
            "VALUES (?, ?, ?, ?, ?, ?) RETURNING id", (camera, start, end, path, size, sha256))
        return Segment(int(rows[0][0]), camera, start, end, path, size, sha256)  # type: ignore[call-overload]

    def between(self, camera: str, start: float, end: float) -> list[Segment]:
        """The camera's segments overlapping [start, end), oldest first."""
        rows = self._run(
            f"SELECT {_COLUMNS} FROM segments s WHERE s.camera = ? AND s.start < ? AND s.end > ? "  # noqa: S608
            "ORDER BY s.start", (camera, end, start))
        return [_segment(r) for r in rows]

    def segments(self, camera: str | None = None) -> list[Segment]:
        """Every segment (of one camera), oldest first."""
        if camera is None:
            rows = self._run(f"SELECT {_COLUMNS} FROM segments s ORDER BY s.start")  # noqa: S608
        else:
            rows = self._run(f"SELECT {_COLUMNS} FROM segments s WHERE s.camera = ? "  # noqa: S608
                             "ORDER BY s.start", (camera,))
        return [_segment(r) for r in rows]

    def paths(self) -> set[str]:
        return {str(r[0]) for r in self._run("SELECT path FROM segments")}

    def evictable(self, now: float, *, before: float | None = None,
                  limit: int = 64) -> list[Segment]:
        """Unpinned segments, oldest first; only those ending before `before` if given."""
        cutoff = "AND s.end <= :before" if before is not None else ""
        rows = self._run(
            f"SELECT {_COLUMNS} FROM segments s WHERE NOT {_PINNED} {cutoff} "  # noqa: S608
            "ORDER BY s.start LIMIT :limit", {"now": now, "before": before, "limit": limit})
        return [_segment(r) for r in rows]

    def remove(self, ids: Iterable[int]) -> None:
        """Forget segments (their files are deleted first by the caller)."""
        self._run_many("DELETE FROM segments WHERE id = ?", [(i,) for i in ids])

    def _run_many(self, sql: str, rows: list[tuple[object, ...]]) -> None:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(sql, rows)
                self._db.execute("COMMIT")
            except sqlite3.Error as e:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise RecordingIndexError(f"recording index {self.path}: {e}") from e

    def usage(self, now: float) -> Usage:
        (count, size, oldest, newest), = self._run(
            "SELECT COUNT(*), COALESCE(SUM(bytes), 0), MIN(start), MAX(end) FROM segments")
        (pcount, psize), = self._run(
            f"SELECT COUNT(*), COALESCE(SUM(s.bytes), 0) FROM segments s WHERE {_PINNED}",  # noqa: S608
            {"now": now})
        return Usage(int(count), int(size), int(pcount), int(psize),  # type: ignore[call-overload]
                     oldest, newest)  # type: ignore[arg-type]

    # --- pins ---

    def pin(self, camera: str | None, start: float, end: float, category: Category, reason: str,
            *, now: float, expires: float | None) -> Pin:
        """Hold footage of [start, end) (one camera, or all when None) until `expires`."""
        if end <= start:
            raise ValueError(f"a pin needs start < end, got {start} and {end}")
        if category is Category.CONTINUOUS:
            raise ValueError("continuous footage is what is not pinned")
        rows = self._run(
            "INSERT INTO pins (camera, start, end, category, reason, created, expires) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (camera, start, end, str(category), reason, now, expires))
        return Pin(int(rows[0][0]), camera, start, end, category, reason, now, expires)  # type: ignore[call-overload]

    def pins(self, now: float) -> list[Pin]:
        """Pins still in force, oldest first."""
        rows = self._run("SELECT id, camera, start, end, category, reason, created, expires "
                         "FROM pins WHERE expires IS NULL OR expires > ? ORDER BY start", (now,))
        return [Pin(r[0], r[1], r[2], r[3], Category(r[4]), r[5], r[6], r[7])  # type: ignore[arg-type]
                for r in rows]

    def release(self, pin_id: int, *, now: float) -> bool:
        """End a pin now (a legal hold lifted); False if there is no such pin in force."""
        rows = self._run("UPDATE pins SET expires = ? WHERE id = ? AND "
                         "(expires IS NULL OR expires > ?) RETURNING id", (now, pin_id, now))
        return bool(rows)

    def forget_pins(self, before: float) -> None:
        """Drop pins that expired before `before` (they hold nothing any more)."""
        self._run("DELETE FROM pins WHERE expires IS NOT NULL AND expires < ?", (before,))

    def close(self) -> None:
        with self._lock:
            self._db.close()
