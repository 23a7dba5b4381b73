"""What every camera gives the pipeline, whatever the hardware: frames, their size and rate.

A camera is opened once by the worker that owns it, delivers BGR frames from `frames()` and is
closed when the worker stops. Backends (PyAV for files, streams and USB devices; Picamera2
for the Pi's own camera) implement :class:`Camera`; the edge app picks one from the source's
URL and never looks further.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, Self

import numpy as np
import numpy.typing as npt

# BGR, uint8, shape (height, width, 3): what OpenCV and the detectors take.
Image = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class Frame:
    """One picture from a camera.

    `index` counts delivered frames from 0 for each open. `pts_s` is the source's own
    timestamp in seconds (a file's presentation time, an IP camera's stream clock, the Pi
    sensor's timestamp), None when the source gives none. `captured_at` is the reading
    process's monotonic clock when the frame was handed out.
    """

    image: Image
    index: int
    pts_s: float | None
    captured_at: float


class CameraError(RuntimeError):
    """A camera could not be opened or stopped delivering.

    The message names the source (passwords removed) and says what went wrong in words a
    technician on site can act on, e.g. ``camera rtsp://admin:***@10.0.0.9/main: no data for
    5 s (stream stalled); check the camera's power and network``.
    """

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"camera {source}: {problem}")
        self.source = source
        self.problem = problem


class Camera(Protocol):
    """A camera on the pole, opened once and read frame by frame.

    `open()` connects to the source and learns its frame size; it raises :class:`CameraError`
    when the source is missing, unreadable or not video, and does nothing if already open.
    `frames()` yields frames until the end of a finite file (when it returns normally); a
    live source that drops out raises :class:`CameraError` instead of ending. `close()`
    releases the source and may be called any number of times; the camera can be opened
    again afterwards. Used as a context manager it opens on entry and closes on exit.
    Not thread-safe: one thread opens, reads and closes it.
    """

    @property
    def url(self) -> str:
        """The source as configured, e.g. ``/dev/video0``, ``rtsp://...``, ``picamera2:0``."""
        ...

    @property
    def name(self) -> str:
        """The source for logs and messages: the URL with any password replaced by ``***``."""
        ...

    @property
    def is_open(self) -> bool: ...

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of delivered frames; raises :class:`CameraError` before `open()`."""
        ...

    @property
    def fps(self) -> float | None:
        """The source's nominal frame rate, None when it does not say."""
        ...

    def open(self) -> None: ...

    def frames(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
