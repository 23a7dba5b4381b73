"""The ids of commands the node has taken, with the last answer it gave each: a command is
carried out at most once per id, across restarts and power cuts."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from drivers.fullcard import open_store

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS commands (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    received_at REAL NOT NULL,   -- unix time
    response    BLOB             -- the last answer given (JSON), NULL until the first
);
"""
KEEP_S = 7 * 24 * 3600  # ids are remembered this long (far longer than commands.max_age_s)


class CommandLogError(Exception):
    """The log cannot be read or written (disk full, read-only, corrupt)."""


@dataclass(frozen=True)
class Taken:
    id: str
    name: str
    received_at: float
    response: bytes | None


class CommandLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:  # on a full card, alone: else every command is refused until a restart
            self._db, alone = open_store(path, _SCHEMA, synchronous="FULL")
        except (sqlite3.Error, OSError) as e:
            raise CommandLogError(f"cannot open command log {path}: {e}") from None
        if alone:
            log.warning("command log %s opened for this process alone (%s: card full?)",
                        path, alone)

    def take(self, command_id: str, name: str) -> Taken | None:
        """Record a new id; returns None if it is new, else what was recorded the first time."""
        with self._lock:
            try:
                cur = self._db.execute(
                    "INSERT OR IGNORE INTO commands (id, name, received_at) VALUES (?, ?, ?)",
                    (command_id, name, time.time()))
                if cur.rowcount == 1:
                    return None
                row = self._db.execute(
                    "SELECT id, name, received_at, response FROM commands WHERE id = ?",
                    (command_id,)).fetchone()
            except sqlite3.Error as e:
                raise CommandLogError(f"cannot write command log {self.path}: {e}") from e
        return Taken(*row)

    def answered(self, command_id: str, response: bytes) -> None:
        with self._lock:
            try:
                self._db.execute("UPDATE commands SET response = ? WHERE id = ?",
                                 (response, command_id))
            except sqlite3.Error as e:
                raise CommandLogError(f"cannot write command log {self.path}: {e}") from e

    def prune(self, now: float) -> int:
        with self._lock:
            try:
                cur = self._db.execute("DELETE FROM commands WHERE received_at < ?",
                                       (now - KEEP_S,))
            except sqlite3.Error as e:
                raise CommandLogError(f"cannot prune command log {self.path}: {e}") from e
            return cur.rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()
