"""systemd's notify protocol (sd_notify) for a `Type=notify` service with `WatchdogSec`.

READY=1 once the service can do its job; WATCHDOG=1 at least every half watchdog period
while it is healthy. If the pings stop, systemd kills and restarts the service; with
`RuntimeWatchdogSec` set, a hung systemd or kernel is handed to the hardware watchdog.
Outside systemd (no NOTIFY_SOCKET) every call is a harmless no-op.
"""

from __future__ import annotations

import os

try:
    from systemd import daemon as _daemon  # type: ignore[attr-defined]
except ImportError:  # not on Linux; nothing to notify
    _daemon = None


class ServiceNotifier:
    def __init__(self) -> None:
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.watchdog_s: float | None = int(usec) / 1e6 if usec.isdigit() and mine else None

    def _notify(self, state: str) -> bool:
        return bool(_daemon is not None and _daemon.notify(state))

    def ready(self, status: str = "") -> bool:
        return self._notify("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def ping(self) -> bool:
        return self._notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self._notify(f"STATUS={text}")

    def stopping(self) -> bool:
        return self._notify("STOPPING=1")
