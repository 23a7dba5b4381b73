"""Retry pacing for whatever loses its peer: a driver its device, the uplink its broker.

A serial adapter pulled from its USB socket, a sensor bus without power, a head that stopped
answering: the driver keeps trying, sooner at first and then less often, so a device that
comes back is picked up quickly and one that stays away does not cost a busy loop.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Exponential backoff with "equal jitter": each wait is between half and all of
    min_s·2^attempt, capped at max_s, so waits grow while devices retrying together spread out.
    """

    def __init__(
        self, min_s: float, max_s: float, rng: Callable[[], float] = random.random
    ) -> None:
        if not 0 < min_s <= max_s:
            raise ValueError(f"backoff needs 0 < min_s <= max_s, got {min_s!r} and {max_s!r}")
        self.min_s, self.max_s, self._rng = min_s, max_s, rng
        self.attempt = 0

    def next(self) -> float:
        """The wait before the next attempt; each call counts one failed attempt."""
        cap = min(self.max_s, self.min_s * 2.0**self.attempt)
        # Past 2**32 the cap is max_s anyway; bounding the exponent keeps the float finite.
        self.attempt = min(self.attempt + 1, 32)
        return cap / 2 + self._rng() * cap / 2

    def reset(self) -> None:
        """The device answered: the next failure waits the shortest time again."""
        self.attempt = 0
