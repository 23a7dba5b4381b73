"""A simulated Pelco-D pan/tilt/zoom head at the far end of a pty, for tests and the demo.

It listens like a head on the pole's RS-485 line: frames for its address move it, frames for
other addresses are seen and ignored, noise and bad checksums are counted. Position follows
from the motion commands and the time they ran (speed 63 pans at about 63°/s), zoom runs
between 1× and 30×, presets store and recall (pan, tilt, zoom); recalling one puts the head
there at once. `state()` shows what a technician would see looking up at the pole.

Run it on its own for the demo; it prints the port to open and runs until interrupted:

    python -m devkit.simulators.ptz --address 1 [--link PATH]
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

from drivers.lifecycle import Lifecycle
from drivers.ptyline import PtyLine
from drivers.ptz import pelco_d
from drivers.ptz.pelco_d import Frame, FrameParser

logger = logging.getLogger(__name__)

PAN_DEG_PER_S_PER_STEP = 1.0
TILT_DEG_PER_S_PER_STEP = 0.5
TILT_MIN_DEG, TILT_MAX_DEG = -90.0, 20.0
ZOOM_MIN, ZOOM_MAX, ZOOM_PER_S = 1.0, 30.0, 5.0
_FRAME_LOG = 10_000


@dataclass(frozen=True)
class Preset:
    pan_deg: float
    tilt_deg: float
    zoom: float


@dataclass(frozen=True)
class HeadState:
    """A snapshot of the simulated head and of what it heard on the line."""

    pan_deg: float
    tilt_deg: float
    zoom: float
    moving: bool
    presets: dict[int, Preset] = field(default_factory=dict)
    last_preset: int | None = None
    frames_ok: int = 0
    bad_checksum: int = 0
    garbage_bytes: int = 0
    other_address: int = 0
    unknown_preset: int = 0
    unsupported: int = 0


class SimulatedHead(Lifecycle):
    """A Pelco-D head at `address`; the driver opens `path`.

    `clock` drives the motion model, so a test can move time by hand and know exactly where
    the head is. `received()` lists the frames addressed to this head, in arrival order.
    """

    def __init__(
        self,
        address: int = 1,
        *,
        link: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.address = address
        self._clock = clock
        self._lock = threading.Lock()
        self._parser = FrameParser()
        self._t = clock()
        self._pan = self._tilt = 0.0
        self._zoom = ZOOM_MIN
        self._pan_rate = self._tilt_rate = self._zoom_rate = 0.0
        self._presets: dict[int, Preset] = {}
        self._last_preset: int | None = None
        self._other_address = self._unknown_preset = self._unsupported = 0
        self._frames: deque[Frame] = deque(maxlen=_FRAME_LOG)
        self._line = PtyLine(self._on_bytes, link=link, name=f"ptz-sim-{address}")

    @property
    def path(self) -> str:
        return self._line.path

    def state(self) -> HeadState:
        with self._lock:
            self._advance()
            return HeadState(
                pan_deg=self._pan,
                tilt_deg=self._tilt,
                zoom=self._zoom,
                moving=bool(self._pan_rate or self._tilt_rate or self._zoom_rate),
                presets=dict(self._presets),
                last_preset=self._last_preset,
                frames_ok=self._parser.frames_ok,
                bad_checksum=self._parser.bad_checksum,
                garbage_bytes=self._parser.garbage_bytes,
                other_address=self._other_address,
                unknown_preset=self._unknown_preset,
                unsupported=self._unsupported,
            )

    def received(self) -> list[Frame]:
        """The frames addressed to this head so far (the latest 10,000), oldest first."""
        with self._lock:
            return list(self._frames)

    def unplug(self) -> None:
        """The RS-485 adapter is pulled: the driver's port fails and `path` disappears."""
        self._line.unplug()

    def plug(self) -> None:
        """A new adapter: a fresh pty at `path` (same path when a link was given)."""
        self._line.plug()

    def _release(self) -> None:
        self._line.close()

    def _on_bytes(self, data: bytes) -> None:
        with self._lock:
            for frame in self._parser.feed(data):
                if frame.address != self.address:
                    self._other_address += 1
                    continue
                self._frames.append(frame)
                self._advance()
                self._apply(frame)

    def _advance(self) -> None:
        now = self._clock()
        dt, self._t = max(0.0, now - self._t), now
        self._pan = (self._pan + self._pan_rate * dt) % 360.0
        self._tilt = min(TILT_MAX_DEG, max(TILT_MIN_DEG, self._tilt + self._tilt_rate * dt))
        self._zoom = min(ZOOM_MAX, max(ZOOM_MIN, self._zoom + self._zoom_rate * dt))

    def _apply(self, frame: Frame) -> None:
        if frame.is_extended:
            self._apply_extended(frame)
            return
        cmd2 = frame.cmd2
        pan_dir = _direction(cmd2, pelco_d.RIGHT, pelco_d.LEFT)
        tilt_dir = _direction(cmd2, pelco_d.UP, pelco_d.DOWN)
        zoom_dir = _direction(cmd2, pelco_d.ZOOM_IN, pelco_d.ZOOM_OUT)
        self._pan_rate = pan_dir * min(frame.data1, pelco_d.MAX_SPEED) * PAN_DEG_PER_S_PER_STEP
        self._tilt_rate = tilt_dir * min(frame.data2, pelco_d.MAX_SPEED) * TILT_DEG_PER_S_PER_STEP
        self._zoom_rate = zoom_dir * ZOOM_PER_S
        logger.info("head %d: pan %+.1f°/s tilt %+.1f°/s zoom %+.1f×/s", self.address,
                    self._pan_rate, self._tilt_rate, self._zoom_rate)

    def _apply_extended(self, frame: Frame) -> None:
        n = frame.data2
        if frame.cmd2 == pelco_d.SET_PRESET and n >= pelco_d.MIN_PRESET:
            self._presets[n] = Preset(self._pan, self._tilt, self._zoom)
            logger.info("head %d: preset %d stored", self.address, n)
        elif frame.cmd2 == pelco_d.CLEAR_PRESET and n >= pelco_d.MIN_PRESET:
            self._presets.pop(n, None)
            logger.info("head %d: preset %d cleared", self.address, n)
        elif frame.cmd2 == pelco_d.GO_TO_PRESET:
            preset = self._presets.get(n)
            if preset is None:
                self._unknown_preset += 1
                logger.info("head %d: no preset %d to go to", self.address, n)
                return
            self._pan, self._tilt, self._zoom = preset.pan_deg, preset.tilt_deg, preset.zoom
            self._pan_rate = self._tilt_rate = self._zoom_rate = 0.0
            self._last_preset = n
            logger.info("head %d: at preset %d", self.address, n)
        else:
            self._unsupported += 1


def _direction(cmd2: int, positive: int, negative: int) -> int:
    # Both bits at once is a malformed command: a real head does not move on it.
    if cmd2 & positive and not cmd2 & negative:
        return 1
    if cmd2 & negative and not cmd2 & positive:
        return -1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A simulated Pelco-D PTZ head on a pty.")
    parser.add_argument("--address", type=int, default=1, help="Pelco-D address (1-255)")
    parser.add_argument("--link", help="also reachable at this path (a symlink to the pty)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    done = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with SimulatedHead(args.address, link=args.link) as head:
        print(head.path, flush=True)
        while not done.wait(1.0):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
