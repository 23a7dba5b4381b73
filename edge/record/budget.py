"""The disk budget: recordings stay inside a byte limit and leave the data partition a floor.

Before each new segment the keeper evicts the oldest unpinned segments until the next one
fits under the budget and above the free-space floor; a periodic sweep deletes unpinned
footage older than the continuous retention and forgets expired pins. Footage under an
alert, event or legal-hold pin is never evicted for space: when only pinned footage is left
and there is still no room, recording pauses and says why, so the disk never fills.
"Oldest" and "older than" are in recorded time (edge/record/timeline.py), never by the
wall-clock labels: a step of the wall clock neither ages footage nor keeps it.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from edge.record.index import Segment, SegmentIndex
from edge.record.timeline import Timeline, clock_of

log = logging.getLogger(__name__)

DAY_S = 86400.0


class DiskUsage(NamedTuple):
    total: int
    used: int
    free: int


@dataclass(frozen=True, slots=True)
class Budget:
    """How much the recordings may take: `max_bytes` and/or `max_fraction` of the partition
    (the smaller wins), while leaving at least `min_free_bytes` free on it."""

    max_bytes: int | None = None
    max_fraction: float | None = 0.8
    min_free_bytes: int = 1 << 30

    def limit(self, disk: DiskUsage) -> int:
        limits = [self.max_bytes] if self.max_bytes is not None else []
        if self.max_fraction is not None:
            limits.append(int(disk.total * self.max_fraction))
        return min(limits) if limits else disk.total


@dataclass(frozen=True, slots=True)
class Eviction:
    segments: int
    bytes: int


class Keeper:
    """Enforces the budget and continuous retention over one recordings folder; `timeline`
    gives the clocks (the system's; `now` instead: a clock that never steps)."""

    def __init__(self, index: SegmentIndex, budget: Budget, *, continuous_days: float,
                 now: Callable[[], float] | None = None,
                 disk_usage: Callable[[Path], DiskUsage] | None = None,
                 timeline: Timeline | None = None) -> None:
        self.index, self.budget, self.continuous_days = index, budget, continuous_days
        self.timeline = timeline or Timeline(index, clock_of(now))
        self._disk_usage = disk_usage or (lambda p: DiskUsage(*shutil.disk_usage(p)))
        self.evicted_segments = 0
        self.evicted_bytes = 0

    def disk(self) -> DiskUsage:
        return self._disk_usage(self.index.root)

    def make_room(self, need_bytes: int) -> str:
        """Evict oldest unpinned footage until `need_bytes` more fit; '' or why not."""
        now = self.timeline.now().rec
        while True:
            disk = self.disk()
            limit = self.budget.limit(disk)
            # A first guess (no segment written yet) must not ask for more than a small budget has.
            need_bytes = min(need_bytes, limit // 4)
            used = self.index.usage(now).bytes
            over_budget = used + need_bytes - limit
            under_floor = self.budget.min_free_bytes + need_bytes - disk.free
            if over_budget <= 0 and under_floor <= 0:
                return ""
            victims = self.index.evictable(now, limit=16)
            if not victims:
                if over_budget > 0 and used:
                    return (f"the budget ({_mb(limit)}) is full of pinned footage (alerts, "
                            "events, legal holds)")
                if over_budget > 0:
                    return f"the budget ({_mb(limit)}) is too small for one segment"
                return (f"only {_mb(disk.free)} free on the data partition, below the "
                        f"{_mb(self.budget.min_free_bytes)} floor, and nothing left to evict")
            freed = 0
            for segment in victims:
                try:
                    freed += self._delete(segment)
                except OSError as e:
                    return f"cannot delete old footage ({segment.path}): {e.strerror or e}"
                if freed >= max(over_budget, under_floor):
                    break

    def sweep(self) -> Eviction:
        """Delete unpinned footage past its retention; forget pins that expired long ago."""
        moved = self.timeline.settle()
        if moved:
            log.info("the clock is synchronised: footage of earlier boots is %.0f s older than "
                     "it was counted (the node was off)", moved)
        now = self.timeline.now().rec
        cutoff = now - self.continuous_days * DAY_S
        count = size = 0
        try:
            while victims := self.index.evictable(now, before=cutoff, limit=64):
                for segment in victims:
                    size += self._delete(segment)
                    count += 1
        except OSError as e:
            log.error("retention sweep stopped: cannot delete old footage: %s", e)
        self.index.forget_pins(cutoff)
        return Eviction(count, size)

    def _delete(self, segment: Segment) -> int:
        # File first, then row: a crash in between leaves a row without a file, which
        # reconcile drops, rather than an unindexed file it would take for a torn segment.
        self.index.file(segment).unlink(missing_ok=True)
        self.index.remove([segment.id])
        self.evicted_segments += 1
        self.evicted_bytes += segment.bytes
        return segment.bytes


def _mb(n: int) -> str:
    return f"{n / 1e6:.0f} MB"
