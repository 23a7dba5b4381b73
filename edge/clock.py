"""The node's one clock: wall time for payloads, monotonic time for intervals, and whether
the wall clock is synchronised (alerts and evidence carry it)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from contract.pole import ClockSource
from drivers.platform.timesync import adjtimex

monotonic = time.monotonic

# GPS time minus ours within this counts as agreeing: the offset includes the receiver's
# transmit delay (a few hundred ms), so it can vouch for seconds, not milliseconds.
GPS_AGREES_S = 1.0

_gps_offset: Callable[[], float | None] | None = None


@dataclass(frozen=True)
class SyncState:
    """Whether the clock is synchronised and who says so: "ntp" (the kernel, disciplined
    by chrony or timesyncd), "gps" (the node's clock agrees with the GPS receiver) or
    "none". `offset_s` is GPS time minus the node's clock, while a receiver reports one."""

    synced: bool
    source: ClockSource
    offset_s: float | None


def now() -> datetime:
    """Current UTC time, timezone-aware."""
    return datetime.now(UTC)


def clock_synced() -> bool:
    """True when the kernel says NTP (chrony, timesyncd, GPS) has synchronised the clock.

    Read from adjtimex() by `drivers.platform.timesync` (the one place that reads it):
    neither TIME_ERROR nor STA_UNSYNC, and a max error under 16 s. Needs no privileges.
    """
    return adjtimex()[0]


def use_gps(offset_s: Callable[[], float | None] | None) -> None:
    """Where `sync_state` asks for the GPS offset (the cabinet's receiver); None: nowhere."""
    global _gps_offset
    _gps_offset = offset_s


def sync_state() -> SyncState:
    """ntp when the kernel is synchronised (chrony or timesyncd, which may use the GPS
    themselves); else gps when the receiver's time agrees with the node's clock; else none,
    still with the receiver's offset if it has one, so the hub can correct the time."""
    offset = _gps_offset() if _gps_offset is not None else None
    if offset is not None:
        offset = round(offset, 3)
    if clock_synced():
        return SyncState(True, "ntp", offset)
    if offset is not None and abs(offset) <= GPS_AGREES_S:
        return SyncState(True, "gps", offset)
    return SyncState(False, "none", offset)
