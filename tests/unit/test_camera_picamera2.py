"""Picamera2Camera on the picamera2 stand-in (tests/support/camera_standin.py): the lores stream
it reads, the sensor's timestamps, the recorder's encoder hook, and a Pi without the library,
without the camera or with a camera that stops delivering."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from devkit.demo.footage import vtest_path
from drivers.camera import CameraError, Picamera2Camera, make_camera, open_camera
from tests.support import camera_standin


@pytest.fixture(scope="module")
def footage() -> Path:
    return vtest_path()


def test_without_picamera2_opening_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes `import picamera2` fail, as on a machine without it.
    monkeypatch.setitem(sys.modules, "picamera2", None)
    camera = Picamera2Camera(0)
    with pytest.raises(CameraError, match="picamera2 is not installed") as caught:
        camera.open()
    assert "picamera2:0" in str(caught.value)
    assert not camera.is_open
    camera.close()


def test_a_camera_number_with_no_camera_behind_it(monkeypatch: pytest.MonkeyPatch,
                                                  footage: Path) -> None:
    camera_standin.install(monkeypatch, footage)
    with pytest.raises(CameraError, match="ribbon cable") as caught:
        Picamera2Camera(1).open()
    assert "picamera2:1" in str(caught.value)


def test_the_lores_stream_is_configured_as_yuv_beside_a_main_stream_for_the_encoder(
        monkeypatch: pytest.MonkeyPatch, footage: Path) -> None:
    standin = camera_standin.install(monkeypatch, footage)
    with Picamera2Camera(0, output_size=(641, 361), main_size=(1280, 720), fps=12.5) as camera:
        # libcamera rounds sizes to even numbers; the camera reports what it delivers.
        assert camera.size == (640, 360)
        config = standin.made[0].camera_configuration()
        assert config is not None
        assert config["lores"]["format"] == "YUV420"
        assert config["main"]["size"] == (1280, 720)
        assert config["encode"] == "main"
        assert config["controls"]["FrameDurationLimits"] == (80000, 80000)
        frame = next(camera.frames())
    assert frame.image.shape == (360, 640, 3)


def test_padded_lores_rows_become_the_picture_without_the_padding(
        monkeypatch: pytest.MonkeyPatch, footage: Path) -> None:
    standin = camera_standin.install(monkeypatch, footage)
    source = cv2.VideoCapture(str(footage))
    originals = [source.read()[1] for _ in range(3)]
    source.release()
    with Picamera2Camera(0, output_size=(600, 340)) as camera:
        config = standin.made[0].camera_configuration()
        assert config is not None and config["lores"]["stride"] > 600
        frames = list(itertools.islice(camera.frames(), 3))
    for frame, original in zip(frames, originals, strict=True):
        expected = cv2.resize(original, (600, 340), interpolation=cv2.INTER_AREA)
        # Only YUV 4:2:0 rounding separates them; a padding column would show at the edge.
        assert np.abs(frame.image.astype(int) - expected.astype(int)).mean() < 3
        assert np.abs(frame.image[:, -4:].astype(int) - expected[:, -4:].astype(int)).mean() < 6


def test_frames_carry_the_sensor_timestamp(monkeypatch: pytest.MonkeyPatch,
                                           footage: Path) -> None:
    camera_standin.install(monkeypatch, footage)
    with Picamera2Camera(0, fps=10.0) as camera:
        frames = list(itertools.islice(camera.frames(), 5))
    pts = [f.pts_s for f in frames]
    assert all(p is not None for p in pts)
    steps = [b - a for a, b in itertools.pairwise(pts)]  # type: ignore[operator]
    assert steps == pytest.approx([0.1] * 4)


def test_a_sensor_that_stops_delivering_gives_a_camera_error(monkeypatch: pytest.MonkeyPatch,
                                                             footage: Path) -> None:
    camera_standin.install(monkeypatch, footage, frames_before_stall=4)
    frames = []
    camera = Picamera2Camera(0, read_timeout_s=0.2)
    with camera, pytest.raises(CameraError, match=r"no frame for 0\.2 s") as caught:
        for frame in camera.frames():
            frames.append(frame)
    assert not camera.is_open
    assert len(frames) == 4
    assert "picamera2:0" in str(caught.value)


def test_the_recorder_hooks_the_hardware_encoder_onto_the_main_stream(
        monkeypatch: pytest.MonkeyPatch, footage: Path) -> None:
    standin = camera_standin.install(monkeypatch, footage)
    got: list[tuple[bytes, bool, int | None]] = []

    class Segmenter:  # the recorder's packetizer: duck-typed, not a picamera2 Output
        def start(self) -> None: ...
        def stop(self) -> None: ...
        def outputframe(self, frame: bytes, keyframe: bool = True, timestamp: int | None = None,
                        packet: object = None, audio: bool = False) -> None:
            got.append((frame, keyframe, timestamp))

    camera = Picamera2Camera(0)
    with camera:
        camera.start_encoder(Segmenter(), iperiod=30)
        (encoder, output, stream), = standin.made[0].encoders
        output.outputframe(b"\x00\x00\x01\x65", True, 40000)  # as picamera2's encoder calls it
        assert got == [(b"\x00\x00\x01\x65", True, 40000)] and stream == "main"
        assert encoder.iperiod == 30 and encoder.running
        assert len(list(itertools.islice(camera.frames(), 2))) == 2
    assert not encoder.running, "closing the camera stops the encoder"
    assert not standin.made[0].is_open


def test_a_pi_camera_is_picked_by_its_url(monkeypatch: pytest.MonkeyPatch,
                                          footage: Path) -> None:
    camera_standin.install(monkeypatch, footage)
    assert isinstance(make_camera("picamera2"), Picamera2Camera)
    camera = open_camera("picamera2:0", output_size=(320, 180))
    try:
        assert isinstance(camera, Picamera2Camera) and camera.is_open
        assert camera.size == (320, 180)
    finally:
        camera.close()
    with pytest.raises(CameraError, match="picamera2:N"):
        make_camera("picamera2:front")
