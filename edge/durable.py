"""Making writes survive a power cut: the one place that syncs a directory entry."""

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


def open_db(path: Path, schema: str, *, synchronous: Literal["FULL", "NORMAL"],
            timeout_s: float = 0.5) -> sqlite3.Connection:
    """An SQLite store in WAL mode, shared between threads (callers hold their own lock).

    FULL: a commit is on the card when it returns (alerts, command ids). NORMAL: it survives
    the process being killed, and a power cut may lose the last commits."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.executescript(schema)
    return db
