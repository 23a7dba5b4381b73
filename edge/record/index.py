"""The recording index: one SQLite file listing every segment on disk and every pin on footage.

A segment row is written only after its file is complete and synced, so a row always names
a whole, hashed file; the file being written at a power cut has no row yet and is repaired
or dropped on the next start (`reconcile`). Pins hold a time window of footage (one camera
or all) for an alert, an event or a legal hold; a segment overlapping an active pin is never
evicted. Paths are relative to the recordings folder.

Times are unix seconds, twice: `start`/`end` are the wall clock in force when the footage was
recorded (its label: names, clip windows, manifests; never rewritten), `rec_start`/`rec_end`
its recorded time (edge/record/timeline.py: monotonic, immune to clock steps), which orders
the footage and ages it. Pin expiries and every `now` given to the index are recorded time.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from drivers.storage import open_db

INDEX_FILE = "index.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS segments (
    id        INTEGER PRIMARY KEY,
    camera    TEXT NOT NULL,
    start     REAL NOT NULL,    -- wall time of its first (key)frame, by the clock then in force
    end       REAL NOT NULL,    -- wall time its last frame ends, by the same clock
    path      TEXT NOT NULL UNIQUE,
    bytes     INTEGER NOT NULL,
    sha256    TEXT NOT NULL,    -- of the file as written
    boot      INTEGER NOT NULL DEFAULT 0,  -- boots.seq of the boot that recorded it
    rec_start REAL NOT NULL DEFAULT 0,     -- recorded time of start and end
    rec_end   REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS segments_by_camera ON segments(camera, start);
CREATE INDEX IF NOT EXISTS segments_by_start ON segments(start);
CREATE TABLE IF NOT EXISTS pins (
    id        INTEGER PRIMARY KEY,
    camera    TEXT,            -- NULL: every camera of the node
    start     REAL NOT NULL,   -- the window, in wall time as footage is labelled
    end       REAL NOT NULL,
    category  TEXT NOT NULL,
    reason    TEXT NOT NULL,   -- what asked for it: an alert or event id, a case number
    created   REAL NOT NULL,   -- wall time
    expires   REAL,            -- recorded time; NULL: until released (legal hold)
    boot      INTEGER NOT NULL DEFAULT 0,
    rec_start REAL NOT NULL DEFAULT 0,  -- the window in recorded time, through the clock
    rec_end   REAL NOT NULL DEFAULT 0   -- in force when it was pinned
);
CREATE INDEX IF NOT EXISTS pins_by_end ON pins(end);
CREATE TABLE IF NOT EXISTS boots (
    seq       INTEGER PRIMARY KEY,
    boot_id   TEXT NOT NULL UNIQUE,  -- the kernel's id of the boot
    base      REAL NOT NULL,         -- recorded time at its monotonic zero
    seen      REAL NOT NULL,         -- the latest recorded time it wrote
    settled   INTEGER NOT NULL       -- 1: the time before it is measured (clock synchronised)
);
"""
# Indexes on columns an index made before recorded time lacks until _migrate adds them.
_INDEXES = "CREATE INDEX IF NOT EXISTS segments_by_rec ON segments(rec_start);"
_ADDED = ("boot INTEGER NOT NULL DEFAULT 0", "rec_start REAL NOT NULL DEFAULT 0",
          "rec_end REAL NOT NULL DEFAULT 0")
LEGACY_BOOT = "before recorded time"  # rows of an older index: their wall time stands in

# A segment [s.start, s.end) overlaps a pin of its camera that has not expired, in wall time
# or in recorded time (a step between the pin and its footage cannot unpin it).
_PINNED = """EXISTS (SELECT 1 FROM pins p
    WHERE (p.camera IS NULL OR p.camera = s.camera)
      AND ((p.start < s.end AND p.end > s.start)
           OR (p.rec_start < s.rec_end AND p.rec_end > s.rec_start))
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
class Moment:
    """A moment as the recordings know it: the wall clock then in force and recorded time,
    in boot `boot` (edge/record/timeline.py makes them)."""

    wall: float
    rec: float
    boot: int = 0

    @staticmethod
    def steady(t: float) -> Moment:
        """A moment of a clock that never steps: wall and recorded time are one."""
        return Moment(t, t)


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
    boot: int
    rec_start: float
    rec_end: float

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
    created: float  # wall time
    expires: float | None  # recorded time
    boot: int
    rec_start: float
    rec_end: float


@dataclass(frozen=True, slots=True)
class Usage:
    """What the recordings hold: all segments, and the part no eviction may touch now."""

    segments: int
    bytes: int
    pinned_segments: int
    pinned_bytes: int
    oldest: float | None  # the wall-time label of the first recorded footage kept
    newest: float | None  # and where the last recorded ends


def _segment(row: tuple[object, ...]) -> Segment:
    return Segment(*row)  # type: ignore[arg-type]


def _pin(r: tuple[object, ...]) -> Pin:
    return Pin(r[0], r[1], r[2], r[3], Category(r[4]), *r[5:])  # type: ignore[arg-type]


_SETTLE = (
    "UPDATE segments SET rec_start = rec_start - :d, rec_end = rec_end - :d WHERE boot < :boot",
    "UPDATE pins SET rec_start = rec_start - :d, rec_end = rec_end - :d, expires = expires - :d "
    "WHERE boot < :boot",
    "UPDATE boots SET base = base - :d, seen = seen - :d WHERE seq < :boot",
)


def _migrate(db: sqlite3.Connection) -> None:
    """Give an index made before recorded time its columns: its rows keep their wall times
    as recorded time, in a boot of their own that came first."""
    def missing() -> list[str]:
        return [t for t in ("segments", "pins")
                if "rec_start" not in {r[1] for r in db.execute(f"PRAGMA table_info({t})")}]

    if not missing():
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        for table in missing():  # again: another process may have just done it
            for column in _ADDED:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
            db.execute(f"UPDATE {table} SET rec_start = start, rec_end = end")  # noqa: S608
        db.execute("INSERT OR IGNORE INTO boots (seq, boot_id, base, seen, settled) VALUES "
                   "(0, ?, 0, COALESCE((SELECT MAX(end) FROM segments), 0), 1)", (LEGACY_BOOT,))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


# Queries here are built from these constants alone (hence the S608 notes), never from input.
_COLUMNS = "s.id, s.camera, s.start, s.end, s.path, s.bytes, s.sha256, s.boot, s.rec_start, " \
    "s.rec_end"
_PIN_COLUMNS = "id, camera, start, end, category, reason, created, expires, boot, rec_start, " \
    "rec_end"


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
            _migrate(self._db)
            self._db.executescript(_INDEXES)
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

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                yield self._db
                self._db.execute("COMMIT")
            except BaseException as e:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if isinstance(e, sqlite3.Error):
                    raise RecordingIndexError(f"recording index {self.path}: {e}") from e
                raise

    # --- segments ---

    def add(self, camera: str, start: float, end: float, path: str, size: int,
            sha256: str, *, rec: tuple[float, float], boot: int) -> Segment:
        """Record a complete segment file (call after it is written and synced): its wall-time
        label `start`-`end` and its recorded time `rec`, in boot `boot`."""
        rows = self._run(
            "INSERT INTO segments (camera, start, end, path, bytes, sha256, boot, rec_start, "
            "rec_end) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (camera, start, end, path, size, sha256, boot, rec[0], rec[1]))
        self._saw(boot, rec[1])
        return Segment(int(rows[0][0]), camera, start, end, path, size, sha256,  # type: ignore[call-overload]
                       boot, rec[0], rec[1])

    def between(self, camera: str, start: float, end: float) -> list[Segment]:
        """The camera's segments labelled within [start, end) (after a step back, footage
        of two stretches of time can be), in the order they were recorded."""
        rows = self._run(
            f"SELECT {_COLUMNS} FROM segments s WHERE s.camera = ? AND s.start < ? AND s.end > ? "  # noqa: S608
            "ORDER BY s.rec_start", (camera, end, start))
        return [_segment(r) for r in rows]

    def segments(self, camera: str | None = None) -> list[Segment]:
        """Every segment (of one camera), in the order they were recorded."""
        if camera is None:
            rows = self._run(f"SELECT {_COLUMNS} FROM segments s ORDER BY s.rec_start")  # noqa: S608
        else:
            rows = self._run(f"SELECT {_COLUMNS} FROM segments s WHERE s.camera = ? "  # noqa: S608
                             "ORDER BY s.rec_start", (camera,))
        return [_segment(r) for r in rows]

    def newest(self, camera: str) -> Segment | None:
        """The camera's segment recorded last."""
        rows = self._run(f"SELECT {_COLUMNS} FROM segments s WHERE s.camera = ? "  # noqa: S608
                         "ORDER BY s.rec_end DESC LIMIT 1", (camera,))
        return _segment(rows[0]) if rows else None

    def paths(self) -> set[str]:
        return {str(r[0]) for r in self._run("SELECT path FROM segments")}

    def evictable(self, now: float, *, before: float | None = None,
                  limit: int = 64) -> list[Segment]:
        """Unpinned segments, first recorded first; only those whose recorded end is at or
        before `before` if given (`now`, `before`: recorded time)."""
        cutoff = "AND s.rec_end <= :before" if before is not None else ""
        rows = self._run(
            f"SELECT {_COLUMNS} FROM segments s WHERE NOT {_PINNED} {cutoff} "  # noqa: S608
            "ORDER BY s.rec_start LIMIT :limit", {"now": now, "before": before, "limit": limit})
        return [_segment(r) for r in rows]

    def remove(self, ids: Iterable[int]) -> None:
        """Forget segments (their files are deleted first by the caller)."""
        self._run_many("DELETE FROM segments WHERE id = ?", [(i,) for i in ids])

    def _run_many(self, sql: str, rows: list[tuple[object, ...]]) -> None:
        with self._transaction() as db:
            db.executemany(sql, rows)

    def usage(self, now: float) -> Usage:
        (count, size, oldest, newest), = self._run(
            "SELECT COUNT(*), COALESCE(SUM(bytes), 0), "
            "(SELECT start FROM segments ORDER BY rec_start LIMIT 1), "
            "(SELECT end FROM segments ORDER BY rec_end DESC LIMIT 1) FROM segments")
        (pcount, psize), = self._run(
            f"SELECT COUNT(*), COALESCE(SUM(s.bytes), 0) FROM segments s WHERE {_PINNED}",  # noqa: S608
            {"now": now})
        return Usage(int(count), int(size), int(pcount), int(psize),  # type: ignore[call-overload]
                     oldest, newest)  # type: ignore[arg-type]

    # --- pins ---

    def pin(self, camera: str | None, start: float, end: float, category: Category, reason: str,
            *, now: Moment | float, expires: float | None) -> Pin:
        """Hold footage labelled [start, end) (one camera, or all when None) until `expires`
        (recorded time). The window is also held in recorded time, mapped through the clock
        in force `now` (a float: a clock that never steps)."""
        if end <= start:
            raise ValueError(f"a pin needs start < end, got {start} and {end}")
        if category is Category.CONTINUOUS:
            raise ValueError("continuous footage is what is not pinned")
        at = now if isinstance(now, Moment) else Moment.steady(now)
        shift = at.rec - at.wall
        row = (camera, start, end, category, reason, at.wall, expires, at.boot, start + shift,
               end + shift)
        rows = self._run("INSERT INTO pins (camera, start, end, category, reason, created, "
                         "expires, boot, rec_start, rec_end) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                         "RETURNING id", row)
        self._saw(at.boot, at.rec)
        return _pin((rows[0][0], *row))

    def pins(self, now: float) -> list[Pin]:
        """Pins still in force at recorded time `now`, oldest first."""
        rows = self._run(f"SELECT {_PIN_COLUMNS} FROM pins "  # noqa: S608
                         "WHERE expires IS NULL OR expires > ? ORDER BY start", (now,))
        return [_pin(r) for r in rows]

    def release(self, pin_id: int, *, now: float) -> bool:
        """End a pin now (a legal hold lifted); False if there is no such pin in force."""
        rows = self._run("UPDATE pins SET expires = ? WHERE id = ? AND "
                         "(expires IS NULL OR expires > ?) RETURNING id", (now, pin_id, now))
        return bool(rows)

    def forget_pins(self, before: float) -> None:
        """Drop pins that expired before `before` (they hold nothing any more)."""
        self._run("DELETE FROM pins WHERE expires IS NOT NULL AND expires < ?", (before,))

    # --- boots: where each boot's recorded time starts ---

    def join_boot(self, boot_id: str, *, wall: float, mono: float, synced: bool
                  ) -> tuple[int, float, bool]:
        """This boot's (seq, base, settled), entered on its first call: base makes its
        recorded time the wall clock if `synced`, else the last recorded time (see
        edge/record/timeline.py); recorded time never runs back."""
        with self._transaction() as db:
            row = db.execute("SELECT seq, base, settled FROM boots WHERE boot_id = ?",
                             (boot_id,)).fetchone()
            if row is None:
                (seen,), = db.execute("SELECT MAX(seen) FROM boots").fetchall()
                start = wall if seen is None else max(seen, wall) if synced else seen
                row = db.execute(
                    "INSERT INTO boots (boot_id, base, seen, settled) VALUES (?, ?, ?, ?) "
                    "RETURNING seq, base, settled",
                    (boot_id, start - mono, start, int(synced or seen is None))).fetchone()
        return int(row[0]), float(row[1]), bool(row[2])

    def settle(self, boot: int, *, true_base: float) -> float:
        """The clock is synchronised in boot `boot`, and `true_base` is its wall time at the
        boot's monotonic zero: move every earlier boot's recorded time back by however far
        this boot's base is behind it (the time the node was off). Once per boot; returns
        the seconds moved."""
        moved = 0.0
        with self._transaction() as db:
            row = db.execute("UPDATE boots SET settled = 1 WHERE seq = ? AND settled = 0 "
                             "RETURNING base", (boot,)).fetchone()
            if row is not None and true_base > row[0]:
                moved = true_base - row[0]
                for sql in _SETTLE:
                    db.execute(sql, {"d": moved, "boot": boot})
        return moved

    def _saw(self, boot: int, rec: float) -> None:
        self._run("UPDATE boots SET seen = MAX(seen, ?) WHERE seq = ?", (rec, boot))

    def close(self) -> None:
        with self._lock:
            self._db.close()
