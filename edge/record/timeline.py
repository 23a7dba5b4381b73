"""Recorded time: how long ago footage was recorded, in a form no wall-clock step can move.

NTP or GPS setting the clock (an hour ahead or back after a cold boot) must not make footage
look older or newer than it is. So every segment and pin carries, beside the wall-clock times
it is labelled with (file names, payloads, clip windows), its *recorded time*
`rec = base + monotonic`, where each boot of the node has its own `base`, kept in the
index's `boots` table and chosen when the boot first opens the recordings:

* the wall clock then, if the kernel says it is synchronised (never less than the last
  recorded time, so recorded time never runs back);
* else the last recorded time: how long the node was off is not known yet, and counts as 0;
* once the clock is synchronised in a boot that started without it, the time the node was
  off is known, and earlier boots' recorded times are moved back by it (`settle`), once.

Retention, eviction order and pin expiry run on recorded time. Within a boot it is the
monotonic clock; a step of the wall clock changes none of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from edge import clock
from edge.record.index import Moment, SegmentIndex
from firmware.handoff import boot_id

STEP_S = 1.0  # the wall clock moving this far against the monotonic one is a step, not a slew


@dataclass(frozen=True, slots=True)
class Reading:
    """The wall and monotonic clocks, read together."""

    wall: float
    mono: float

    @property
    def offset(self) -> float:
        """Wall minus monotonic: constant until the wall clock is stepped."""
        return self.wall - self.mono


class Clock(Protocol):
    """Where recording reads the time: the system's clocks, or a test's."""

    boot_id: str

    def read(self) -> Reading: ...

    def synced(self) -> bool: ...


class SystemClock:
    """The node's clocks: `edge.clock`'s monotonic and wall time, this boot's kernel id."""

    def __init__(self) -> None:
        self.boot_id = boot_id() or "unknown"

    def read(self) -> Reading:
        mono = clock.monotonic()
        return Reading(time.time(), mono)

    def synced(self) -> bool:
        return clock.clock_synced()


class SteadyClock:
    """A clock whose wall time never steps: wall and monotonic time are the one `now()`
    (tests with time passed in; files read flat out, whose time follows their packets)."""

    boot_id = "steady"

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now

    def read(self) -> Reading:
        t = self._now()
        return Reading(t, t)

    def synced(self) -> bool:
        return True


def clock_of(now: Callable[[], float] | None) -> Clock:
    """The clock for a `now` passed in (a steady one), or the system's."""
    return SteadyClock(now) if now is not None else SystemClock()


class Timeline:
    """`clock`'s readings as recorded time in `index`; joins this boot to the index."""

    def __init__(self, index: SegmentIndex, clock: Clock) -> None:
        self.index, self.clock = index, clock
        r = clock.read()
        self.boot, self.base, self.settled = index.join_boot(
            clock.boot_id, wall=r.wall, mono=r.mono, synced=clock.synced())

    def rec(self, mono: float) -> float:
        """The recorded time of a monotonic time of this boot."""
        return self.base + mono

    def now(self) -> Moment:
        r = self.clock.read()
        return Moment(r.wall, self.rec(r.mono), self.boot)

    def settle(self) -> float:
        """Once the clock is synchronised: move earlier boots back by the time the node was
        off (and this boot's start unknown). Returns how far (0 when already done)."""
        if self.settled or not self.clock.synced():
            return 0.0
        moved = self.index.settle(self.boot, true_base=self.clock.read().offset)
        self.settled = True
        return moved
