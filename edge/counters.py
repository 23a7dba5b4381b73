"""Counters the node keeps for its heartbeat telemetry; one instance per node."""

from __future__ import annotations

import threading
from collections import Counter


class Counters:
    """Thread-safe event counts since start (presses, malformed messages, errors...)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def inc(self, name: str, by: int = 1) -> None:
        with self._lock:
            self._counts[name] += by

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._counts.items()))
