"""The SD card: writes that survive a power cut, and the SQLite stores on it.

The one place that writes a file whole, syncs a folder or opens a database; the pole, the
firmware installer and the hub's evidence store all use it."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Literal


def sync_dir(path: Path) -> None:
    """Make a rename or a new file in `path` survive a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_whole(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` so that a power cut leaves the old or the new file, never half: a
    temporary file beside it, fsync, rename over it, fsync of the folder."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves no stray temporary file
        raise
    sync_dir(path.parent)


def write_new(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Create `path`, which must not exist, with `mode` from the start (a private key is
    never readable by others, whatever the umask), write it, fsync it and its folder."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(fd, mode)  # the umask may have taken bits away; set exactly
        f.write(data)
        f.flush()
        os.fsync(fd)
    sync_dir(path.parent)


def replace_synced(tmp: Path, path: Path) -> None:
    """Move a file written (and fsynced) elsewhere in the same folder over `path`, and sync
    the folder: for files too large to hold in memory (clips, segments)."""
    os.replace(tmp, path)
    sync_dir(path.parent)


def open_db(path: Path, schema: str, *, synchronous: Literal["FULL", "NORMAL"],
            timeout_s: float = 0.5) -> sqlite3.Connection:
    """An SQLite store in WAL mode, shared between threads (callers hold their own lock).

    FULL: a commit is on the card when it returns (alerts, command ids). NORMAL: it survives
    the process being killed, and a power cut may lose the last commits."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.executescript(schema)
    except BaseException:
        db.close()  # a failed store must not hold its lock until the collector runs
        raise
    return db
