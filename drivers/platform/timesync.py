"""Whether the wall clock is synchronised: the kernel's own word (adjtimex) and which sync
daemon is running to keep it so.

Whatever disciplines the clock (chrony, systemd-timesyncd, ntpd, a GPS through chrony)
tells the kernel its error bound; when nothing has for a while, the kernel's bound grows
until it marks the clock unsynchronised. Reading it needs no privileges and no daemon's
socket, so it works the same whichever daemon the image ships.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# <sys/timex.h>: a read-only adjtimex() call (modes = 0) returns the clock state and fills
# in `status` and `maxerror` (microseconds).
_STA_UNSYNC = 0x0040
_TIME_ERROR = 5
_MAX_ERROR_US = 16_000_000  # NTP_PHASE_LIMIT: the kernel's ceiling, i.e. "no idea"

# chronyd's pidfile: distributions' /run/chrony, upstream's default /var/run/chrony, and
# chrony 3's /var/run/chronyd.pid. It is removed when chronyd exits.
_CHRONY_PIDS = ("run/chrony/chronyd.pid", "var/run/chrony/chronyd.pid",
                "run/chronyd.pid", "var/run/chronyd.pid")
# timesyncd's RuntimeDirectory: created when the service starts, removed when it stops.
_TIMESYNCD_DIR = "run/systemd/timesync"


class _Timex(ctypes.Structure):
    # struct timex, glibc layout (x86_64, aarch64 and 32-bit armhf alike up to `status`);
    # the tail is padding large enough for the kernel to write the fields we do not read.
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("_rest", ctypes.c_byte * 200),
    ]


# dlopen(NULL): the C library the interpreter already links, found without ldconfig.
_adjtimex = getattr(ctypes.CDLL(None, use_errno=True), "adjtimex", None)


def adjtimex() -> tuple[bool, float | None]:
    """(synced, max_error_s) as the kernel sees the clock right now.

    Synced means adjtimex() reports neither TIME_ERROR nor STA_UNSYNC and a maximum error
    under 16 s. `max_error_s` is None only when the call itself fails (not Linux, or a
    seccomp filter that forbids it); then synced is False.
    """
    if _adjtimex is None:
        return False, None
    tx = _Timex()
    state = _adjtimex(ctypes.byref(tx))
    if state < 0:
        return False, None
    synced = (state != _TIME_ERROR and not tx.status & _STA_UNSYNC
              and tx.maxerror < _MAX_ERROR_US)
    return synced, tx.maxerror / 1e6


@dataclass(frozen=True)
class ClockSync:
    """Whether the kernel considers the wall clock synchronised, its error bound, and
    which sync daemon (if any) is running to keep it so."""

    synced: bool
    daemon: str | None  # "chrony" | "timesyncd" | None
    max_error_s: float | None


def read_clock(root: Path, adjtimex: Callable[[], tuple[bool, float | None]]) -> ClockSync:
    """The clock's state from `adjtimex`, and the daemon from its runtime files under root."""
    synced, max_error_s = adjtimex()
    if any((root / p).exists() for p in _CHRONY_PIDS):
        daemon: str | None = "chrony"
    elif (root / _TIMESYNCD_DIR).is_dir():
        daemon = "timesyncd"
    else:
        daemon = None
    return ClockSync(synced, daemon, max_error_s)
