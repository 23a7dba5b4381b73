"""The node's one clock: wall time for payloads, monotonic time for intervals, and whether
the wall clock is synchronised (alerts and evidence carry it)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from drivers.platform.timesync import adjtimex

monotonic = time.monotonic


def now() -> datetime:
    """Current UTC time, timezone-aware."""
    return datetime.now(UTC)


def clock_synced() -> bool:
    """True when the kernel says NTP (chrony, timesyncd, GPS) has synchronised the clock.

    Read from adjtimex() by `drivers.platform.timesync` (the one place that reads it):
    neither TIME_ERROR nor STA_UNSYNC, and a max error under 16 s. Needs no privileges.
    """
    return adjtimex()[0]
