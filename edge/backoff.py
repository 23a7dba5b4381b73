"""Retry pacing shared by everything that reconnects: the uplink, camera sources."""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Exponential backoff with "equal jitter": each wait is between half and all of
    min_s·2^attempt (capped at max_s), so delays grow but nodes spread out."""

    def __init__(self, min_s: float, max_s: float, rng: Callable[[], float] = random.random):
        self.min_s, self.max_s, self._rng = min_s, max_s, rng
        self.attempt = 0

    def next(self) -> float:
        cap = min(self.max_s, self.min_s * 2.0**self.attempt)
        self.attempt = min(self.attempt + 1, 32)
        return cap / 2 + self._rng() * cap / 2

    def reset(self) -> None:
        self.attempt = 0
