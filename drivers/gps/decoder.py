"""NMEA 0183 from a GPS receiver, decoded: bytes off the serial line in, a position fix out.

The receiver sends one sentence a line, about once a second: GGA gives the position, fix
quality, satellites in use and HDOP; RMC gives the position with the UTC date and a
valid/void flag. Noise, sentences with a bad checksum and sentences cut short (a receiver
starting up, a port opened mid-sentence) are counted and skipped; a sentence after them is
read as if they had not been there. pynmea2 reads the fields once the framing and checksum
are checked here.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pynmea2

# NMEA caps a sentence at 82 characters; a longer run without a newline is noise.
_MAX_LINE = 120
_SENTENCE = re.compile(rb"\$([\x20-\x7e]*)\*([0-9A-Fa-f]{2})")
# What pynmea2 raises on malformed fields (found by fuzzing: IndexError from short PUBX).
_FIELD_ERRORS = (ValueError, TypeError, IndexError, KeyError, OverflowError)


@dataclass(frozen=True)
class Fix:
    """A position fix as the receiver reported it; `age_s` is how long ago it arrived."""

    latitude: float
    longitude: float
    altitude_m: float | None
    quality: int  # GGA fix quality: 1 GPS, 2 DGPS, 4 RTK fixed, 5 RTK float, 6 estimated
    satellites: int | None
    hdop: float | None
    utc: datetime | None
    age_s: float


class NmeaDecoder:
    """NMEA bytes in, fix state out; holds no port and no thread. Not thread-safe."""

    def __init__(self) -> None:
        self._pending = bytearray()
        self.sentences = self.bad_checksum = self.partial = 0
        self.garbage_bytes = self.unparsed = self.ignored = 0
        self.quality = 0
        self.satellites: int | None = None
        self.last_sentence_at: float | None = None
        self.has_fix = False
        self._fix: Fix | None = None
        self._fix_at = 0.0
        self._date: date | None = None
        self._last_utc: datetime | None = None
        self._offset: tuple[float, float] | None = None  # (offset_s, when)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def feed(self, data: bytes, now: float, wall: float) -> None:
        """Take bytes read at monotonic time `now`, wall-clock time `wall`."""
        self._pending += data
        *lines, rest = self._pending.split(b"\n")
        self._pending = rest
        for line in lines:
            self._line(bytes(line.rstrip(b"\r")), now, wall)
        if len(self._pending) > _MAX_LINE:
            start = self._pending.rfind(b"$")
            keep = start >= 0 and len(self._pending) - start <= _MAX_LINE
            self._discard(bytes(self._pending[: start if keep else len(self._pending)]))
            del self._pending[: start if keep else len(self._pending)]

    def fix(self, now: float) -> Fix | None:
        """The last valid fix, aged to `now`; None before the first."""
        if self._fix is None:
            return None
        return dataclasses.replace(self._fix, age_s=max(0.0, now - self._fix_at))

    def clock_offset_s(self, now: float, max_age_s: float) -> float | None:
        """GPS UTC minus the wall clock, from a valid RMC no older than `max_age_s`."""
        if self._offset is None or now - self._offset[1] > max_age_s:
            return None
        return self._offset[0]

    def _discard(self, data: bytes) -> None:
        first = data.find(b"$")
        self.garbage_bytes += len(data) if first < 0 else first
        if first >= 0:
            self.partial += data.count(b"$")

    def _line(self, line: bytes, now: float, wall: float) -> None:
        last = line.rfind(b"$")
        if last < 0:
            self.garbage_bytes += len(line)
            return
        # Everything before the last "$" was cut off by it: noise or a partial sentence.
        self._discard(line[:last])
        match = _SENTENCE.fullmatch(line, last)
        if match is None:
            self.partial += 1
            return
        body, checksum = match.group(1), int(match.group(2), 16)
        computed = 0
        for byte in body:
            computed ^= byte
        if computed != checksum:
            self.bad_checksum += 1
            return
        try:
            message = pynmea2.parse(line[last:].decode("ascii"), check=False)
        except (pynmea2.ParseError, *_FIELD_ERRORS):
            self.unparsed += 1
            return
        try:
            handled = self._apply(message, now, wall)
        except _FIELD_ERRORS:
            self.unparsed += 1
            return
        self.sentences += 1
        self.last_sentence_at = now
        if not handled:
            self.ignored += 1

    def _apply(self, message: Any, now: float, wall: float) -> bool:
        kind = getattr(message, "sentence_type", "")
        if kind == "GGA":
            self._gga(message, now)
        elif kind == "RMC":
            self._rmc(message, now, wall)
        else:
            return False
        return True

    def _gga(self, m: Any, now: float) -> None:
        quality = int(m.gps_qual or 0)
        satellites = int(m.num_sats) if m.num_sats else None
        if quality == 0 or not (m.lat and m.lon):
            self.quality, self.satellites, self.has_fix = 0, satellites, False
            return
        latitude, longitude = _position(m)
        self._set_fix(Fix(
            latitude=latitude,
            longitude=longitude,
            altitude_m=float(m.altitude) if m.altitude is not None else None,
            quality=quality,
            satellites=satellites,
            hdop=float(m.horizontal_dil) if m.horizontal_dil else None,
            utc=self._gga_utc(m.timestamp),
            age_s=0.0,
        ), now)
        self.quality, self.satellites = quality, satellites

    def _gga_utc(self, stamp: Any) -> datetime | None:
        """GGA has no date: borrow the last RMC's, rolling over at midnight."""
        if self._date is None or stamp is None:
            return None
        utc = _aware(datetime.combine(self._date, stamp))
        if self._last_utc is not None and utc < self._last_utc - timedelta(hours=12):
            utc += timedelta(days=1)
        return utc

    def _rmc(self, m: Any, now: float, wall: float) -> None:
        if m.status != "A" or not (m.lat and m.lon):
            self.has_fix = False
            return
        latitude, longitude = _position(m)
        stamp, day = m.timestamp, m.datestamp
        utc = _aware(datetime.combine(day, stamp)) if day and stamp else None
        if utc is not None:
            self._date, self._last_utc = day, utc
            self._offset = (utc.timestamp() - wall, now)
        previous = self._fix
        # RMC has no altitude, quality or HDOP: keep what the last GGA said.
        self._set_fix(Fix(
            latitude=latitude,
            longitude=longitude,
            altitude_m=previous.altitude_m if previous else None,
            quality=max(self.quality, 1),
            satellites=self.satellites,
            hdop=previous.hdop if previous else None,
            utc=utc,
            age_s=0.0,
        ), now)

    def _set_fix(self, fix: Fix, now: float) -> None:
        self._fix, self._fix_at, self.has_fix = fix, now, True


def _aware(utc: datetime) -> datetime:
    return utc.replace(tzinfo=UTC) if utc.tzinfo is None else utc


def _position(m: Any) -> tuple[float, float]:
    latitude, longitude = float(m.latitude), float(m.longitude)
    if not (math.isfinite(latitude) and math.isfinite(longitude)) or (
        abs(latitude) > 90 or abs(longitude) > 180
    ):
        raise ValueError(f"position out of range: {latitude}, {longitude}")
    return latitude, longitude
