"""Cameras on the pole: files, IP streams and USB cameras through FFmpeg, the Pi camera
through Picamera2, all behind one small `Camera` interface.

`open_camera(source)` picks the backend from the source: ``picamera2:N`` is the Pi's own
camera number N, anything else (a path, ``/dev/videoN``, ``rtsp://``...) goes to FFmpeg.
"""

from __future__ import annotations

from typing import Any

from drivers.camera.av_connection import SourceKind, redact, source_kind
from drivers.camera.av_source import AvCamera, PacketSink
from drivers.camera.base import Camera, CameraError, Frame, Image
from drivers.camera.picamera2_source import URL_PREFIX, Picamera2Camera

__all__ = [
    "AvCamera",
    "Camera",
    "CameraError",
    "Frame",
    "Image",
    "PacketSink",
    "Picamera2Camera",
    "SourceKind",
    "make_camera",
    "open_camera",
    "redact",
    "source_kind",
]


def make_camera(source: str, **options: Any) -> Camera:
    """The camera for `source`, not yet open; `options` go to its constructor."""
    if source == URL_PREFIX.rstrip(":") or source.startswith(URL_PREFIX):
        number = source[len(URL_PREFIX):] or "0"
        if not number.isdigit():
            raise CameraError(source, "a Pi camera is named picamera2:N, N its number (0, 1)")
        return Picamera2Camera(int(number), **options)
    return AvCamera(source, **options)


def open_camera(source: str, **options: Any) -> Camera:
    """The camera for `source`, opened (raises CameraError if it cannot be)."""
    camera = make_camera(source, **options)
    camera.open()
    return camera
