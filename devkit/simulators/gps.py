"""A simulated GPS receiver on a pty: an NMEA talker sending GGA and RMC for a fixed position.

It stands in for the USB GPS puck on the pole. Each cycle (1 Hz by default, like a real
receiver) it sends a GGA and an RMC for its position and the current UTC time; with the fix
lost it sends the void forms receivers send while searching. For fault tests it can put
noise on the line, spoil a sentence's checksum, cut a sentence short, or go quiet, either on
request (deterministic, for tests) or at random rates (for the demo).

    python -m devkit.simulators.gps [--lat 50.2547 --lon 28.6587] [--rate-hz 1] [--link PATH]
        [--garbage-rate P] [--bad-checksum-rate P] [--partial-rate P] [--no-fix]
"""

from __future__ import annotations

import argparse
import random
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType

from drivers.lifecycle import Lifecycle
from drivers.ptyline import PtyLine

ZHYTOMYR = (50.2547, 28.6587)


def checksum(body: str) -> int:
    """XOR of the characters between "$" and "*"."""
    value = 0
    for char in body.encode("ascii"):
        value ^= char
    return value


def sentence(body: str) -> bytes:
    return f"${body}*{checksum(body):02X}\r\n".encode("ascii")


def _time(utc: datetime) -> str:
    return f"{utc:%H%M%S}.{utc.microsecond // 10_000:02d}"


def _angle(value: float, degree_digits: int, hemispheres: str) -> tuple[str, str]:
    """Decimal degrees as NMEA (d)ddmm.mmmm and a hemisphere letter."""
    minutes_total = round(abs(value) * 60, 4)
    degrees = int(minutes_total // 60)
    minutes = minutes_total - degrees * 60
    hemisphere = hemispheres[0] if value >= 0 else hemispheres[1]
    return f"{degrees:0{degree_digits}d}{minutes:07.4f}", hemisphere


def gga(utc: datetime, latitude: float, longitude: float, *, fix: bool = True,
        satellites: int = 9, hdop: float = 0.9, altitude_m: float = 221.0) -> bytes:
    """A GGA sentence; without a fix the position fields are empty and the quality 0."""
    if not fix:
        return sentence(f"GPGGA,{_time(utc)},,,,,0,{satellites:02d},,,M,,M,,")
    lat, ns = _angle(latitude, 2, "NS")
    lon, ew = _angle(longitude, 3, "EW")
    return sentence(f"GPGGA,{_time(utc)},{lat},{ns},{lon},{ew},1,{satellites:02d},{hdop:.1f},"
                    f"{altitude_m:.1f},M,27.9,M,,")


def rmc(utc: datetime, latitude: float, longitude: float, *, fix: bool = True) -> bytes:
    """An RMC sentence (NMEA 2.3, with mode); void ("V") and without position when no fix."""
    if not fix:
        return sentence(f"GPRMC,{_time(utc)},V,,,,,,,{utc:%d%m%y},,,N")
    lat, ns = _angle(latitude, 2, "NS")
    lon, ew = _angle(longitude, 3, "EW")
    return sentence(f"GPRMC,{_time(utc)},A,{lat},{ns},{lon},{ew},0.00,0.00,{utc:%d%m%y},,,A")


class GpsSimulator(Lifecycle):
    """An NMEA talker at `latitude`, `longitude`; the driver opens `path`.

    `utc` is the receiver's notion of time: pass a shifted clock to play a node whose own
    clock is off. Fault rates are per sentence, drawn from `seed`.
    """

    def __init__(
        self,
        latitude: float = ZHYTOMYR[0],
        longitude: float = ZHYTOMYR[1],
        *,
        rate_hz: float = 1.0,
        link: str | None = None,
        utc: Callable[[], datetime] = lambda: datetime.now(UTC),
        garbage_rate: float = 0.0,
        bad_checksum_rate: float = 0.0,
        partial_rate: float = 0.0,
        seed: int | None = None,
    ) -> None:
        if not rate_hz > 0:
            raise ValueError(f"rate_hz must be > 0, got {rate_hz!r}")
        super().__init__()
        self._lock = threading.Lock()
        self._position = (latitude, longitude)
        self._period = 1.0 / rate_hz
        self._utc = utc
        self._rates = (garbage_rate, bad_checksum_rate, partial_rate)
        self._rng = random.Random(seed)  # noqa: S311 (line noise to simulate, not secrets)
        self._fix = True
        self._talking = True
        self._noise: list[bytes] = []
        self._corrupt = self._cut = 0
        self.sentences_sent = self.corrupted = self.cut = self.garbage_bytes = 0
        self._line = PtyLine(link=link, name="gps-sim-line")
        self._start_thread(self._talk, "gps-sim")

    @property
    def path(self) -> str:
        return self._line.path

    def set_fix(self, fix: bool) -> None:
        """Lose the fix (antenna covered, indoors) or regain it."""
        with self._lock:
            self._fix = fix

    def set_talking(self, talking: bool) -> None:
        """Go quiet (receiver hung, powered down) with the port still there, or resume."""
        with self._lock:
            self._talking = talking

    def move_to(self, latitude: float, longitude: float) -> None:
        with self._lock:
            self._position = (latitude, longitude)

    def inject(self, noise: bytes) -> None:
        """Put these bytes on the line just before the next sentence."""
        with self._lock:
            self._noise.append(noise)

    def corrupt_next(self, n: int = 1) -> None:
        """Send the next `n` sentences with a wrong checksum."""
        with self._lock:
            self._corrupt += n

    def cut_next(self, n: int = 1) -> None:
        """Cut the next `n` sentences off halfway, without their line end."""
        with self._lock:
            self._cut += n

    def unplug(self) -> None:
        """The receiver is pulled out: the driver's port fails and `path` disappears."""
        self._line.unplug()

    def plug(self) -> None:
        self._line.plug()

    def _release(self) -> None:
        self._line.close()

    def _talk(self) -> None:
        while not self._stopping.wait(self._period):
            with self._lock:
                if not self._talking:
                    continue
                now, (lat, lon), fix = self._utc(), self._position, self._fix
            for raw in (gga(now, lat, lon, fix=fix), rmc(now, lat, lon, fix=fix)):
                self._line.write(self._spoil(raw))

    def _spoil(self, raw: bytes) -> bytes:
        """The sentence as it goes out, with any fault due applied."""
        garbage_rate, bad_rate, partial_rate = self._rates
        with self._lock:
            noise = b"".join(self._noise)
            self._noise.clear()
            if garbage_rate and self._rng.random() < garbage_rate:
                noise += self._rng.randbytes(self._rng.randint(1, 20))
            self.sentences_sent += 1
            self.garbage_bytes += len(noise)
            if self._corrupt or (bad_rate and self._rng.random() < bad_rate):
                self._corrupt = max(0, self._corrupt - 1)
                self.corrupted += 1
                star = raw.rindex(b"*")
                wrong = (int(raw[star + 1 : star + 3], 16) + 1) % 256
                raw = raw[: star + 1] + f"{wrong:02X}".encode() + b"\r\n"
            elif self._cut or (partial_rate and self._rng.random() < partial_rate):
                self._cut = max(0, self._cut - 1)
                self.cut += 1
                raw = raw[: len(raw) // 2]
        return noise + raw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A simulated NMEA GPS receiver on a pty.")
    parser.add_argument("--lat", type=float, default=ZHYTOMYR[0])
    parser.add_argument("--lon", type=float, default=ZHYTOMYR[1])
    parser.add_argument("--rate-hz", type=float, default=1.0)
    parser.add_argument("--link", help="also reachable at this path (a symlink to the pty)")
    parser.add_argument("--garbage-rate", type=float, default=0.0)
    parser.add_argument("--bad-checksum-rate", type=float, default=0.0)
    parser.add_argument("--partial-rate", type=float, default=0.0)
    parser.add_argument("--no-fix", action="store_true", help="send void sentences only")
    args = parser.parse_args(argv)
    done = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with GpsSimulator(
        args.lat, args.lon, rate_hz=args.rate_hz, link=args.link,
        garbage_rate=args.garbage_rate, bad_checksum_rate=args.bad_checksum_rate,
        partial_rate=args.partial_rate,
    ) as gps:
        gps.set_fix(not args.no_fix)
        print(gps.path, flush=True)
        while not done.wait(1.0):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
