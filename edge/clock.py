"""The node's one clock: wall time for payloads, monotonic time for intervals, and whether
the wall clock is synchronised (alerts and evidence carry it)."""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from datetime import UTC, datetime

monotonic = time.monotonic

# struct timex from <sys/timex.h> (x86_64 and aarch64 glibc layout): we read `status` and
# `maxerror`; the rest is padding large enough for the kernel to write into.
_STA_UNSYNC = 0x0040
_TIME_ERROR = 5


class _Timex(ctypes.Structure):
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("_rest", ctypes.c_byte * 200),
    ]


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def now() -> datetime:
    """Current UTC time, timezone-aware."""
    return datetime.now(UTC)


def clock_synced() -> bool:
    """True when the kernel says NTP (chrony, timesyncd, GPS) has synchronised the clock.

    Same test as systemd's timedatectl: adjtimex() not reporting TIME_ERROR/STA_UNSYNC and
    a max error under 16 s. Read-only; needs no privileges.
    """
    tx = _Timex()
    state = _libc.adjtimex(ctypes.byref(tx))
    if state < 0 or state == _TIME_ERROR:
        return False
    return not (tx.status & _STA_UNSYNC) and tx.maxerror < 16_000_000
