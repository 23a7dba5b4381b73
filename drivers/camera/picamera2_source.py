"""The Raspberry Pi's own camera (CSI ribbon cable) through Picamera2 and libcamera.

The sensor runs two streams at once: `main`, full size, for the hardware H.264 encoder
that feeds the recorder, and `lores`, small YUV420, converted to BGR for detection. Only
`lores` is read here; `start_encoder` is the recorder's hook into `main`.

picamera2 exists only on Raspberry Pi OS, so it is imported when the camera opens.
Written against picamera2 0.3.x as found in raspberrypi/picamera2 (``Picamera2(camera_num)``,
``create_video_configuration``, ``configure``, ``start``, ``capture_request(wait=False)``
with ``wait(job, timeout)``, ``CompletedRequest.make_array``/``get_metadata``/``release``,
``start_encoder``/``stop_encoder``, ``stop``, ``close``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import cv2
import numpy as np

from drivers.camera.base import Camera, CameraError, Frame

log = logging.getLogger(__name__)

URL_PREFIX = "picamera2:"


class Picamera2Camera(Camera):
    """The Pi camera numbered `camera_num` (0 is the first CSI port), e.g. ``picamera2:0``.

    `output_size` (width, height) is the lores stream delivered by `frames()`; `main_size`
    is the full-size stream for recording. `fps` fixes the sensor's frame rate. libcamera
    may round sizes to what the hardware supports: `size` reports the one delivered.
    Frames carry the sensor's timestamp (`SensorTimestamp`, in seconds) as `pts_s`, the
    clock the encoder stamps the main stream with. No frame within `read_timeout_s` (a
    loose ribbon cable, a crashed sensor) raises :class:`CameraError`.
    """

    def __init__(
        self,
        camera_num: int = 0,
        *,
        output_size: tuple[int, int] = (640, 360),
        main_size: tuple[int, int] = (1920, 1080),
        fps: float = 15.0,
        read_timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._camera_num = camera_num
        self._output_size = output_size
        self._main_size = main_size
        self._fps = fps
        self._read_timeout_s = read_timeout_s
        self._clock = clock
        self._picam2: Any = None
        self._encoder: Any = None
        self._size: tuple[int, int] | None = None
        self._index = 0

    @property
    def url(self) -> str:
        return f"{URL_PREFIX}{self._camera_num}"

    @property
    def name(self) -> str:
        return self.url

    @property
    def is_open(self) -> bool:
        return self._picam2 is not None

    @property
    def size(self) -> tuple[int, int]:
        if self._size is None:
            raise CameraError(self.name, "not open: call open() first")
        return self._size

    @property
    def fps(self) -> float | None:
        return self._fps

    @property
    def frames_decoded(self) -> int:
        """Frames delivered since open."""
        return self._index

    def open(self) -> None:
        if self._picam2 is not None:
            return
        try:
            from picamera2 import Picamera2
        except ImportError as e:
            raise CameraError(
                self.name, "picamera2 is not installed (on Raspberry Pi OS: apt install "
                "python3-picamera2; elsewhere use a video file, stream URL or /dev/videoN)"
            ) from e
        try:
            picam2 = Picamera2(self._camera_num)
        except (RuntimeError, IndexError) as e:
            raise CameraError(
                self.name, f"the camera did not start ({e}); check the ribbon cable and that "
                "no other program is using the camera") from e
        frame_us = round(1_000_000 / self._fps)
        try:
            config = picam2.create_video_configuration(
                main={"size": self._main_size, "format": "YUV420"},
                lores={"size": self._output_size, "format": "YUV420"},
                controls={"FrameDurationLimits": (frame_us, frame_us)},
                encode="main",
            )
            picam2.configure(config)
            lores = picam2.camera_configuration()["lores"]
            picam2.start()
        except RuntimeError as e:
            picam2.close()
            raise CameraError(self.name, f"the camera refused its configuration: {e}") from e
        self._picam2 = picam2
        self._size = (int(lores["size"][0]), int(lores["size"][1]))
        self._index = 0
        log.info("camera %s open: lores %dx%d, main %dx%d at %g fps", self.name, *self._size,
                 *self._main_size, self._fps)

    def frames(self) -> Iterator[Frame]:
        if self._picam2 is None or self._size is None:
            raise CameraError(self.name, "not open: call open() first")
        picam2, (width, _) = self._picam2, self._size
        while True:
            try:
                job = picam2.capture_request(wait=False)
                request = picam2.wait(job, timeout=self._read_timeout_s)
            except TimeoutError as e:
                raise CameraError(
                    self.name, f"no frame for {self._read_timeout_s:g} s; check the ribbon "
                    "cable") from e
            except RuntimeError as e:
                raise CameraError(self.name, f"capture failed: {e}") from e
            try:
                yuv = request.make_array("lores")
                metadata = request.get_metadata()
            finally:
                request.release()
            # lores rows are `stride` bytes wide; convert first, then cut the padding off.
            bgr = cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420)[:, :width]
            sensor_ns = metadata.get("SensorTimestamp")
            frame = Frame(
                image=np.ascontiguousarray(bgr),
                index=self._index,
                pts_s=sensor_ns / 1e9 if sensor_ns is not None else None,
                captured_at=self._clock(),
            )
            self._index += 1
            yield frame

    def start_encoder(self, output: Any, *, bitrate: int | None = None,
                      iperiod: int | None = None) -> None:
        """Hook for the recorder: encode the main stream with the Pi's hardware H.264 encoder.

        `output` is anything with picamera2's Output methods (the recorder's packetizer):
        its ``outputframe(frame, keyframe, timestamp, ...)`` gets every encoded access unit,
        timestamps in microseconds from the encoder's start. picamera2 takes only subclasses
        of its own Output, so calls are passed through one. `iperiod` is frames between
        keyframes (where clips can be cut). Runs until `stop_encoder` or `close`.
        """
        if self._picam2 is None:
            raise CameraError(self.name, "not open: call open() first")
        from picamera2.encoders import H264Encoder
        from picamera2.outputs import Output

        class _Through(Output):  # type: ignore[misc]
            def start(self) -> None:
                super().start()
                output.start()

            def stop(self) -> None:
                super().stop()
                output.stop()

            def outputframe(self, frame: bytes, keyframe: bool = True,
                            timestamp: int | None = None, packet: Any = None,
                            audio: bool = False) -> None:
                output.outputframe(frame, keyframe, timestamp, packet, audio)

        self.stop_encoder()
        encoder = H264Encoder(bitrate=bitrate, repeat=True, iperiod=iperiod)
        self._picam2.start_encoder(encoder, _Through(), name="main")
        self._encoder = encoder

    def stop_encoder(self) -> None:
        encoder, self._encoder = self._encoder, None
        if encoder is not None and self._picam2 is not None:
            self._picam2.stop_encoder(encoder)

    def close(self) -> None:
        picam2 = self._picam2
        if picam2 is None:
            return
        try:
            self.stop_encoder()
            picam2.stop()
        finally:
            self._picam2 = None
            self._size = None
            picam2.close()

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed"
        return f"<Picamera2Camera {self.name} {state}, {self._index} frames>"
