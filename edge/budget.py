"""Budgets for what a flood could multiply: how many commands the node takes per second, how
many refusals it answers, how often it logs the same complaint. All on the monotonic clock,
so a step of the wall clock neither opens nor shuts a budget."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from edge import clock


class Budget:
    """A token bucket: `rate_per_s` on average, up to `burst` at once."""

    def __init__(self, rate_per_s: float, burst: float,
                 now: Callable[[], float] = clock.monotonic) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError(f"a budget needs rate > 0 and burst >= 1 (got {rate_per_s}, {burst})")
        self.rate_per_s, self.burst = rate_per_s, burst
        self._now = now
        self._tokens = burst
        self._at = now()
        self._lock = threading.Lock()

    def take(self) -> bool:
        """Spend one token if there is one."""
        with self._lock:
            t = self._now()
            self._tokens = min(self.burst, self._tokens + (t - self._at) * self.rate_per_s)
            self._at = t
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


class QuietLog:
    """Logs one line per kind of complaint per interval, with how many were held back: an
    expected bad input is one line with its reason, and a flood of them is a few lines."""

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0,
                 now: Callable[[], float] = clock.monotonic) -> None:
        self._log, self.interval_s, self._now = logger, interval_s, now
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def warning(self, kind: str, msg: str, *args: object) -> None:
        self._emit(logging.WARNING, kind, msg, args)

    def error(self, kind: str, msg: str, *args: object) -> None:
        self._emit(logging.ERROR, kind, msg, args)

    def _emit(self, level: int, kind: str, msg: str, args: tuple[object, ...]) -> None:
        t = self._now()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and t - last < self.interval_s:
                self._held[kind] = self._held.get(kind, 0) + 1
                return
            if len(self._last) > 256:  # kinds are a fixed set; never let junk grow this
                self._last.clear()
            self._last[kind] = t
            held = self._held.pop(kind, 0)
        if held:
            msg += " (and %d more like it since the last such line)"
            args = (*args, held)
        self._log.log(level, msg, *args)
