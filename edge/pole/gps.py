"""The pole's GPS receiver: its fix for telemetry, and its time as a check of the node's clock
(the offset `edge.clock` uses where NTP cannot be reached).

A receiver that is unplugged (offline) or stops talking (silent) is a problem a crew is told
about, though not before its first sentences could have come; a reader thread that died
stops the watchdog being fed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from contract.pole import GpsStats
from edge import clock
from edge.config.pole import GpsSection

if TYPE_CHECKING:  # the serial driver loads only for a pole whose config has a receiver
    from drivers.gps import GpsReader


class GpsReceiver:
    """The receiver on its serial port, read in the reader's own thread. `since`: when the
    pole's hardware began coming up, from which the receiver gets `stale_after_s` to talk."""

    def __init__(self, section: GpsSection, since: float) -> None:
        from drivers.gps import GpsReader

        self._section = section
        self._since = since
        self.reader: GpsReader = GpsReader(section.port, section.baudrate,
                                           stale_after_s=section.stale_after_s)

    def offset_s(self) -> float | None:
        """GPS time minus the node's clock, while the receiver has a fresh one."""
        return self.reader.clock_offset_s

    def stats(self) -> GpsStats:
        s, fix = self.reader.stats, self.reader.fix
        offset = self.reader.clock_offset_s
        return GpsStats(
            state=s.state,  # type: ignore[arg-type]
            lat=fix.latitude if fix else None, lon=fix.longitude if fix else None,
            altitude_m=fix.altitude_m if fix else None, quality=s.quality,
            satellites=s.satellites, hdop=fix.hdop if fix else None,
            clock_offset_s=round(offset, 3) if offset is not None else None,
            sentences=s.sentences, bad_checksum=s.bad_checksum, partial=s.partial,
            garbage_bytes=s.garbage_bytes, disconnects=s.disconnects, last_error=s.last_error)

    def problems(self) -> list[str]:
        if (self.reader.state in ("offline", "silent")
                and clock.monotonic() - self._since > self._section.stale_after_s):
            return [f"GPS {self.reader.state}"]  # not before its first sentences could come
        return []

    def dead(self) -> str:
        return "GPS reader thread died" if not self.reader.alive() else ""

    def close(self) -> None:
        self.reader.close()
