"""Pelco-D, the RS-485 protocol of the pole's pan/tilt/zoom head: frames, a parser, the head.

Every message is seven bytes: sync 0xFF, the head's address (set by DIP switches on the head),
two command bytes, two data bytes, and a checksum, the sum of bytes 2 to 6 modulo 256.
Command 2 carries the motions (bit 1 right, 2 left, 3 up, 4 down, 5 zoom in, 6 zoom out) with
the pan and tilt speeds (0-63) in the data bytes; with its bit 0 set it is an "extended"
command whose number is command 2 itself: 0x03 set preset, 0x05 clear preset, 0x07 go to
preset, the preset number in data 2. Heads answer only queries, so the line is mostly one way.

`PtzHead` drives one head over a serial port (2400 8N1 by default, as most heads ship);
`FrameParser` reads frames back out of a byte stream, for replies and for the simulator.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import serial

logger = logging.getLogger(__name__)

SYNC = 0xFF
FRAME_LEN = 7
MAX_SPEED = 0x3F

# Command 2 bits for continuous motion.
RIGHT, LEFT, UP, DOWN, ZOOM_IN, ZOOM_OUT = 0x02, 0x04, 0x08, 0x10, 0x20, 0x40
# Extended commands (command 2 with bit 0 set); the preset number goes in data 2.
SET_PRESET, CLEAR_PRESET, GO_TO_PRESET = 0x03, 0x05, 0x07
MIN_PRESET, MAX_PRESET = 1, 255

_WRITE_TIMEOUT_S = 1.0


class PtzError(RuntimeError):
    """The head could not be commanded: the port is missing, unplugged or refused the bytes."""


@dataclass(frozen=True)
class Frame:
    """One Pelco-D message, without its sync byte and checksum (those are derived)."""

    address: int
    cmd1: int
    cmd2: int
    data1: int
    data2: int

    def __post_init__(self) -> None:
        for name in ("address", "cmd1", "cmd2", "data1", "data2"):
            value = getattr(self, name)
            if not 0 <= value <= 0xFF:
                raise ValueError(f"Pelco-D {name} must be a byte (0-255), got {value!r}")

    @property
    def checksum(self) -> int:
        return (self.address + self.cmd1 + self.cmd2 + self.data1 + self.data2) % 256

    @property
    def is_extended(self) -> bool:
        """True for preset and other numbered commands; False for motion and stop."""
        return bool(self.cmd2 & 0x01)

    def encode(self) -> bytes:
        body = bytes((self.address, self.cmd1, self.cmd2, self.data1, self.data2))
        return bytes((SYNC,)) + body + bytes((self.checksum,))


def motion(
    address: int, *, pan: int = 0, tilt: int = 0, zoom: int = 0
) -> Frame:
    """Move at signed speeds: pan > 0 right, tilt > 0 up, zoom > 0 in; all zero is stop."""
    for name, speed in (("pan", pan), ("tilt", tilt)):
        if abs(speed) > MAX_SPEED:
            raise ValueError(f"{name} speed must be within ±{MAX_SPEED}, got {speed}")
    cmd2 = (RIGHT if pan > 0 else LEFT if pan < 0 else 0) | (
        UP if tilt > 0 else DOWN if tilt < 0 else 0
    )
    cmd2 |= ZOOM_IN if zoom > 0 else ZOOM_OUT if zoom < 0 else 0
    return Frame(_address(address), 0, cmd2, abs(pan), abs(tilt))


def preset_command(address: int, command: int, preset: int) -> Frame:
    """An extended preset command (SET_PRESET, CLEAR_PRESET or GO_TO_PRESET)."""
    if command not in (SET_PRESET, CLEAR_PRESET, GO_TO_PRESET):
        raise ValueError(f"not a preset command: 0x{command:02X}")
    if not MIN_PRESET <= preset <= MAX_PRESET:
        raise ValueError(f"preset must be {MIN_PRESET}-{MAX_PRESET}, got {preset!r}")
    return Frame(_address(address), 0, command, 0, preset)


def _address(address: int) -> int:
    if not 1 <= address <= 0xFF:
        raise ValueError(f"Pelco-D address must be 1-255 (the head's DIP switches), got {address}")
    return address


class FrameParser:
    """Cuts Pelco-D frames out of a byte stream that may hold noise, cut frames and bad sums.

    Bytes before a sync byte are garbage. A candidate frame whose checksum is wrong is counted
    and only its sync byte is dropped, since the real frame may start inside it. So every byte
    fed ends up in exactly one place: `7 * frames_ok + garbage_bytes + pending` equals the
    total fed. Not thread-safe; one reader feeds it.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.frames_ok = 0
        self.bad_checksum = 0
        self.garbage_bytes = 0

    @property
    def pending(self) -> int:
        """Bytes held back as the possible start of a frame still arriving."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame]:
        """Take bytes off the line; returns the complete, valid frames among them, in order."""
        self._buffer += data
        frames: list[Frame] = []
        buf = self._buffer
        start = 0
        while True:
            sync = buf.find(SYNC, start)
            if sync < 0:
                self.garbage_bytes += len(buf) - start
                start = len(buf)
                break
            self.garbage_bytes += sync - start
            start = sync
            if len(buf) - start < FRAME_LEN:
                break
            address, cmd1, cmd2, data1, data2, checksum = buf[start + 1 : start + FRAME_LEN]
            if (address + cmd1 + cmd2 + data1 + data2) % 256 != checksum:
                self.bad_checksum += 1
                self.garbage_bytes += 1
                start += 1
                continue
            frames.append(Frame(address, cmd1, cmd2, data1, data2))
            self.frames_ok += 1
            start += FRAME_LEN
        del buf[:start]
        return frames


class PtzHead:
    """A pan/tilt/zoom head on a serial line, commanded by Pelco-D address.

    Motions run until `stop()` (or another motion) as on a joystick; `goto(preset)` swings the
    head to a stored position at its own speed. Commands are sent whole, one at a time, from
    any thread. A write that fails (adapter unplugged, cable cut) raises `PtzError` and closes
    the port; the next command, or `reopen()`, opens it again.
    """

    def __init__(
        self,
        port_or_url: str,
        address: int,
        baudrate: int = 2400,
        *,
        open_now: bool = True,
    ) -> None:
        self.port = port_or_url
        self.address = _address(address)
        self.baudrate = baudrate
        self._lock = threading.Lock()
        self._serial: Any = None
        self.frames_sent = 0
        self.write_errors = 0
        if open_now:
            self.reopen()

    def pan_left(self, speed: int = 32) -> None:
        self.move(pan=-_speed(speed))

    def pan_right(self, speed: int = 32) -> None:
        self.move(pan=_speed(speed))

    def tilt_up(self, speed: int = 32) -> None:
        self.move(tilt=_speed(speed))

    def tilt_down(self, speed: int = 32) -> None:
        self.move(tilt=-_speed(speed))

    def zoom_in(self) -> None:
        self.move(zoom=1)

    def zoom_out(self) -> None:
        self.move(zoom=-1)

    def move(self, *, pan: int = 0, tilt: int = 0, zoom: int = 0) -> None:
        """Signed speeds, -63..63: pan > 0 right, tilt > 0 up, zoom > 0 in (zoom has no speed)."""
        self.send(motion(self.address, pan=pan, tilt=tilt, zoom=zoom))

    def stop(self) -> None:
        self.send(motion(self.address))

    def set_preset(self, n: int) -> None:
        """Store the head's current position as preset `n` (1-255)."""
        self.send(preset_command(self.address, SET_PRESET, n))

    def clear_preset(self, n: int) -> None:
        self.send(preset_command(self.address, CLEAR_PRESET, n))

    def goto(self, preset: int) -> None:
        """Swing to stored preset `preset` (1-255)."""
        self.send(preset_command(self.address, GO_TO_PRESET, preset))

    def send(self, frame: Frame) -> None:
        """Write one frame whole; raises PtzError naming the port if it cannot."""
        data = frame.encode()
        with self._lock:
            if self._serial is None:
                self._open_locked()
            try:
                # No flush(): on a pty tcdrain would wait for the far end to read.
                self._serial.write(data)
            except (serial.SerialException, OSError) as exc:
                self.write_errors += 1
                self._close_locked()
                raise PtzError(
                    f"PTZ head {self.address} on {self.port}: write failed ({exc}); "
                    "is the RS-485 adapter plugged in?"
                ) from exc
            self.frames_sent += 1

    def reopen(self) -> None:
        """Close the port if open and open it again (after the adapter was replaced)."""
        with self._lock:
            self._close_locked()
            self._open_locked()

    def close(self) -> None:
        """Release the port; idempotent. A later command opens it again."""
        with self._lock:
            self._close_locked()

    def __enter__(self) -> PtzHead:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "open" if self._serial is not None else "closed"
        return f"<PtzHead {self.address} on {self.port} ({state}), {self.frames_sent} frames>"

    def _open_locked(self) -> None:
        try:
            self._serial = serial.serial_for_url(
                self.port,
                baudrate=self.baudrate,
                bytesize=serial.EIGHTBITS,
                parity=serial.PARITY_NONE,
                stopbits=serial.STOPBITS_ONE,
                timeout=0,
                write_timeout=_WRITE_TIMEOUT_S,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            self._serial = None
            raise PtzError(
                f"PTZ head {self.address}: cannot open {self.port} ({exc}); "
                "check the RS-485 adapter and the port name"
            ) from exc

    def _close_locked(self) -> None:
        port, self._serial = self._serial, None
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError) as exc:
                logger.debug("PTZ head %d: closing %s: %s", self.address, self.port, exc)


def _speed(speed: int) -> int:
    # Zero would drop the direction bit and turn the motion into a stop.
    if not 1 <= speed <= MAX_SPEED:
        raise ValueError(f"speed must be 1-{MAX_SPEED}, got {speed!r}")
    return speed
