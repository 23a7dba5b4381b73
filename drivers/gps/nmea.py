"""The pole's GPS receiver: where the pole is, and how far the node's clock is from GPS time.

`GpsReader` reads the receiver's NMEA stream (see `drivers.gps.decoder`) from a serial port
in its own thread. If the port vanishes (USB receiver unplugged, cable cut) it reports
`offline` and keeps trying to reopen it, waiting longer each time; nothing escapes the thread.

The clock offset is GPS UTC minus the node's clock at the moment the RMC arrived, so it
includes the receiver's transmit delay (typically a few hundred milliseconds): good enough
to tell a synchronised clock from one that is seconds or days off, not to discipline it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import serial

from drivers.backoff import Backoff
from drivers.gps.decoder import Fix, NmeaDecoder
from drivers.lifecycle import Lifecycle

logger = logging.getLogger(__name__)

_READ_TIMEOUT_S = 0.5


@dataclass(frozen=True)
class GpsStats:
    """The receiver and its line, for telemetry."""

    state: str  # offline | silent | no_fix | fix
    quality: int
    satellites: int | None
    sentences: int
    bad_checksum: int
    partial: int
    garbage_bytes: int
    unparsed: int
    ignored: int
    disconnects: int
    reconnect_attempts: int
    last_error: str | None


class GpsReader(Lifecycle):
    """Reads a GPS receiver on `port` (a device path or pyserial URL) in a daemon thread.

    Nothing escapes the thread: a port that cannot be opened or vanishes makes the state
    `offline` and is retried with backoff; `silent` means the port is open but no valid
    sentence came for `stale_after_s`; then `no_fix` or `fix` as the receiver says.
    """

    def __init__(
        self,
        port: str,
        baudrate: int = 9600,
        *,
        stale_after_s: float = 5.0,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.port = port
        self.baudrate = baudrate
        self._stale_after_s = stale_after_s
        self._clock, self._wall = clock, wall_clock
        self._backoff = Backoff(reconnect_min_s, reconnect_max_s)
        self._lock = threading.Lock()
        self._decoder = NmeaDecoder()
        self._serial: Any = None
        self._online = False
        self._disconnects = self._attempts = 0
        self._last_error: str | None = None
        self._thread = self._start_thread(self._run, "gps-reader")

    @property
    def fix(self) -> Fix | None:
        with self._lock:
            return self._decoder.fix(self._clock())

    @property
    def clock_offset_s(self) -> float | None:
        """GPS UTC minus the node's wall clock, from a recent valid RMC; None if none."""
        with self._lock:
            return self._decoder.clock_offset_s(self._clock(), self._stale_after_s)

    @property
    def state(self) -> str:
        with self._lock:
            return self._state_locked()

    @property
    def stats(self) -> GpsStats:
        with self._lock:
            d = self._decoder
            return GpsStats(
                self._state_locked(), d.quality, d.satellites, d.sentences, d.bad_checksum,
                d.partial, d.garbage_bytes, d.unparsed, d.ignored, self._disconnects,
                self._attempts, self._last_error,
            )

    def alive(self) -> bool:
        """Whether the reading thread runs (it ends only on `close`)."""
        return self._thread.is_alive()

    def _interrupt(self) -> None:
        # close(): stop reading; the thread releases the port as it ends.
        with self._lock:
            port = self._serial
        if port is not None:
            # Wakes the thread from its read at once (pyserial's loop:// has no cancel_read).
            with contextlib.suppress(AttributeError, serial.SerialException, OSError):
                port.cancel_read()

    def _state_locked(self) -> str:
        if not self._online:
            return "offline"
        seen = self._decoder.last_sentence_at
        if seen is None or self._clock() - seen > self._stale_after_s:
            return "silent"
        return "fix" if self._decoder.has_fix else "no_fix"

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._read_port()
            except Exception as exc:
                # A vanished port, or a bug: either way the reader must live on.
                with self._lock:
                    if self._online:
                        self._disconnects += 1
                    self._online = False
                    self._last_error = f"{self.port}: {exc}"
                    self._attempts += 1
                self._close_port()
                delay = self._backoff.next()
                logger.warning("GPS on %s offline (%s); retrying in %.1f s", self.port, exc, delay)
                self._stopping.wait(delay)
        self._close_port()

    def _read_port(self) -> None:
        port = serial.serial_for_url(
            self.port, baudrate=self.baudrate, timeout=_READ_TIMEOUT_S, exclusive=True
        )
        # Whatever queued while nobody listened is stale.
        port.reset_input_buffer()
        with self._lock:
            self._serial, self._online = port, True
        self._backoff.reset()
        logger.info("GPS on %s: port open", self.port)
        while not self._stopping.is_set():
            data = port.read(max(1, port.in_waiting))
            if data:
                with self._lock:
                    self._decoder.feed(data, self._clock(), self._wall())

    def _close_port(self) -> None:
        with self._lock:
            port, self._serial, self._online = self._serial, None, False
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError) as exc:
                logger.debug("GPS on %s: closing: %s", self.port, exc)
