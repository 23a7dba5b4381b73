"""A stand-in for the `picamera2` package, for build machines that have no Pi camera.

It imitates the part of picamera2's API that `Picamera2Camera` uses, with the names,
arguments and return shapes of raspberrypi/picamera2 (0.3.x):

- ``Picamera2(camera_num=0, verbose_console=None, tuning=None)``: picamera2/picamera2.py.
  A camera number with no camera behind it raises ``RuntimeError("Camera __init__ sequence
  did not complete.")`` as the real constructor does.
- ``create_video_configuration(main={}, lores=None, raw={}, transform=..., colour_space=None,
  buffer_count=6, controls={}, display="main", encode="main", queue=True) -> dict`` with
  the same keys; stream dicts take only "format" and "size" (else ValueError) and sizes are
  rounded down to even numbers (``align_stream(optimal=False)``).
- ``configure(config)`` checks what ``check_camera_config`` checks that matters here (lores
  must be YUV and no larger than main) and fills each stream's "stride" and "framesize".
  The stride of a YUV420 stream is its width rounded up to 64 bytes, the alignment
  ``align_stream`` names for YUV420 on the Pi's ISP, so rows carry padding as on hardware.
- ``camera_configuration()``, ``start(config=None, show_preview=False)``, ``stop()``,
  ``close()``, ``start_encoder(encoder=None, output=None, pts=None, quality=None,
  name=None)``, ``stop_encoder(encoders=None)``.
- ``capture_request(wait=None, signal_function=None, flush=None)``: with ``wait=False`` a
  job (picamera2/job.py) whose ``get_result(timeout)`` is a ``concurrent.futures.Future``
  result; ``wait(job, timeout=None)`` returns ``job.get_result(timeout=timeout)``, so a
  camera that delivers nothing raises ``TimeoutError`` after the timeout, as the real one.
- ``CompletedRequest.make_array(name)``: YUV420 as a uint8 array of shape
  ``(height * 3 // 2, stride)`` (picamera2/request.py ``Helpers.make_array``);
  ``get_metadata()`` a dict with ``SensorTimestamp`` (ns) and ``FrameDuration`` (µs);
  ``release()``.
- ``picamera2.encoders.H264Encoder(bitrate=None, repeat=True, iperiod=None, framerate=None,
  enable_sps_framerate=False, qp=None, profile=None)``: picamera2/encoders/h264_encoder.py.

The pictures are real: vtest.avi decoded with PyAV, scaled to the lores size and
converted to I420 with OpenCV. Frames are delivered as fast as asked for, not at the
sensor's rate. `frames_before_stall` makes the sensor stop delivering after that many.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, ClassVar

import av
import cv2
import numpy as np
import pytest

_VALID_STREAM_KEYS = ("format", "size")


def _align_even(size: tuple[int, int]) -> tuple[int, int]:
    return (size[0] - size[0] % 2, size[1] - size[1] % 2)


class H264Encoder:
    def __init__(self, bitrate: int | None = None, repeat: bool = True,
                 iperiod: int | None = None, framerate: float | None = None,
                 enable_sps_framerate: bool = False, qp: int | None = None,
                 profile: str | None = None) -> None:
        self.bitrate = bitrate
        self.repeat = repeat
        self.iperiod = iperiod
        self.running = False


class Output:
    """picamera2/outputs/output.py: the base every encoder output must subclass."""

    def __init__(self, pts: str | None = None) -> None:
        self.recording = False

    def start(self) -> None:
        self.recording = True

    def stop(self) -> None:
        self.recording = False

    def outputframe(self, frame: bytes, keyframe: bool = True, timestamp: int | None = None,
                    packet: Any = None, audio: bool = False) -> None:
        """Subclasses write the frame somewhere."""


class Job:
    def __init__(self) -> None:
        self._future: Future[Any] = Future()

    def get_result(self, timeout: float | None = None) -> Any:
        return self._future.result(timeout=timeout)


class CompletedRequest:
    def __init__(self, picam2: Picamera2, lores: np.ndarray, sensor_ns: int) -> None:
        self.picam2 = picam2
        self._lores = lores
        self._metadata = {"SensorTimestamp": sensor_ns,
                          "FrameDuration": picam2.frame_duration_us}
        self.released = False

    def make_array(self, name: str) -> np.ndarray:
        if name != "lores":
            raise RuntimeError(f"stand-in only fills the lores stream, not {name!r}")
        return self._lores.copy()

    def get_metadata(self) -> dict[str, Any]:
        return dict(self._metadata)

    def release(self) -> None:
        if self.released:
            raise RuntimeError("CompletedRequest: lock now has negative ref_count")
        self.released = True


class Picamera2:
    #: Camera numbers that exist on this pretend Pi.
    cameras = (0,)

    def __init__(self, camera_num: int = 0, verbose_console: int | None = None,
                 tuning: Any = None) -> None:
        if camera_num not in self.cameras:
            raise RuntimeError("Camera __init__ sequence did not complete.")
        self.camera_idx = camera_num
        self.camera_config: dict[str, Any] | None = None
        self.started = False
        self.is_open = True
        self.encoders: list[tuple[H264Encoder, Any, str | None]] = []
        self.frame_duration_us = 33333
        self._frames: Iterator[np.ndarray] | None = None
        self._delivered = 0
        self._sensor_ns = 1_000_000_000
        Standin.made.append(self)

    def create_video_configuration(
        self, main: dict[str, Any] | None = None, lores: dict[str, Any] | None = None,
        raw: dict[str, Any] | None = None, transform: Any = None, colour_space: Any = None,
        buffer_count: int = 6, controls: dict[str, Any] | None = None,
        display: str | None = "main", encode: str | None = "main", queue: bool = True,
    ) -> dict[str, Any]:
        def stream(defaults: dict[str, Any], updates: dict[str, Any] | None) -> dict[str, Any]:
            for key in updates or {}:
                if key not in _VALID_STREAM_KEYS:
                    raise ValueError(f"Bad key {key!r}: valid stream configuration keys are "
                                     f"{_VALID_STREAM_KEYS}")
            config = {**defaults, **(updates or {})}
            config["size"] = _align_even(tuple(config["size"]))
            return config

        main_cfg = stream({"format": "XBGR8888", "size": (1280, 720)}, main or {})
        lores_cfg = None if lores is None else stream(
            {"format": "YUV420", "size": main_cfg["size"]}, lores)
        return {"use_case": "video", "transform": transform, "colour_space": colour_space,
                "buffer_count": buffer_count, "queue": queue, "main": main_cfg,
                "lores": lores_cfg, "raw": None, "controls": dict(controls or {}),
                "display": display, "encode": encode}

    def configure(self, camera_config: dict[str, Any]) -> None:
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        config = {k: (dict(v) if isinstance(v, dict) else v) for k, v in camera_config.items()}
        lores = config["lores"]
        if lores is not None:
            if lores["format"] not in ("YUV420", "YVU420"):
                raise RuntimeError("lores stream must be YUV")
            if (lores["size"][0] > config["main"]["size"][0]
                    or lores["size"][1] > config["main"]["size"][1]):
                raise RuntimeError("lores stream dimensions may not exceed main stream")
        for name in ("main", "lores"):
            if config[name] is None:
                continue
            width, height = config[name]["size"]
            if config[name]["format"] in ("YUV420", "YVU420"):
                stride = -(-width // 64) * 64
                config[name]["stride"] = stride
                config[name]["framesize"] = stride * height * 3 // 2
            else:
                config[name]["stride"] = width * 4
                config[name]["framesize"] = width * 4 * height
        limits = config["controls"].get("FrameDurationLimits")
        if limits:
            self.frame_duration_us = int(limits[1])
        self.camera_config = config

    def camera_configuration(self) -> dict[str, Any] | None:
        return self.camera_config

    def start(self, config: Any = None, show_preview: bool | None = False) -> None:
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        self.started = True

    def capture_request(self, wait: bool | None = None, signal_function: Any = None,
                        flush: Any = None) -> Any:
        job = Job()
        if self.started and (Standin.frames_before_stall is None
                             or self._delivered < Standin.frames_before_stall):
            job._future.set_result(self._next_request())
        return job if wait is False else job.get_result()

    def wait(self, job: Job, timeout: float | None = None) -> Any:
        return job.get_result(timeout=timeout)

    def start_encoder(self, encoder: H264Encoder | None = None, output: Any = None,
                      pts: Any = None, quality: Any = None, name: str | None = None) -> None:
        if encoder is None:
            raise RuntimeError("No encoder specified")
        if not isinstance(output, Output):  # Encoder.output's check in picamera2
            raise RuntimeError("Must pass Output")
        encoder.running = True
        self.encoders.append((encoder, output, name))

    def stop_encoder(self, encoders: Any = None) -> None:
        for encoder, _, _ in self.encoders:
            if encoders is None or encoders is encoder:
                encoder.running = False

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.stop()
        self.is_open = False

    def _next_request(self) -> CompletedRequest:
        assert self.camera_config is not None
        lores = self.camera_config["lores"]
        if self._frames is None:
            self._frames = _vtest_bgr()
        bgr = cv2.resize(next(self._frames), tuple(lores["size"]), interpolation=cv2.INTER_AREA)
        self._delivered += 1
        self._sensor_ns += self.frame_duration_us * 1000
        return CompletedRequest(self, i420_with_stride(bgr, lores["stride"]), self._sensor_ns)


def i420_with_stride(bgr: np.ndarray, stride: int) -> np.ndarray:
    """BGR to I420 laid out as libcamera does: Y rows `stride` wide, U and V `stride // 2`."""
    height, width = bgr.shape[:2]
    flat = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).reshape(-1)
    y = flat[: width * height].reshape(height, width)
    u = flat[width * height: width * height * 5 // 4].reshape(height // 2, width // 2)
    v = flat[width * height * 5 // 4:].reshape(height // 2, width // 2)
    planes = [np.pad(y, ((0, 0), (0, stride - width)))]
    planes += [np.pad(c, ((0, 0), (0, stride // 2 - width // 2))) for c in (u, v)]
    return np.concatenate([p.reshape(-1) for p in planes]).reshape(height * 3 // 2, stride)


def _vtest_bgr() -> Iterator[np.ndarray]:
    """The footage's frames, over and over: a sensor never runs out of pictures."""
    while True:
        with av.open(str(Standin.footage)) as container:
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="bgr24")


class Standin:
    """What the installed stand-in knows: its footage, stall point and the cameras made."""

    footage: Path
    frames_before_stall: int | None = None
    made: ClassVar[list[Picamera2]] = []


def install(monkeypatch: pytest.MonkeyPatch, footage: Path,
            frames_before_stall: int | None = None) -> type[Standin]:
    """Put the stand-in into sys.modules as `picamera2`, `.encoders` and `.outputs`."""
    Standin.footage = footage
    Standin.frames_before_stall = frames_before_stall
    Standin.made = []
    package = types.ModuleType("picamera2")
    encoders = types.ModuleType("picamera2.encoders")
    encoders.H264Encoder = H264Encoder  # type: ignore[attr-defined]
    outputs = types.ModuleType("picamera2.outputs")
    outputs.Output = Output  # type: ignore[attr-defined]
    package.outputs = outputs  # type: ignore[attr-defined]
    package.Picamera2 = Picamera2  # type: ignore[attr-defined]
    package.encoders = encoders  # type: ignore[attr-defined]
    package.__path__ = []  # a package, so `from picamera2.encoders import` resolves
    monkeypatch.setitem(sys.modules, "picamera2", package)
    monkeypatch.setitem(sys.modules, "picamera2.encoders", encoders)
    monkeypatch.setitem(sys.modules, "picamera2.outputs", outputs)
    return Standin

