"""What every camera backend promises the pipeline, checked on each: AvCamera on the sample
footage, and Picamera2Camera on the picamera2 stand-in that shows the same footage."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from devkit.demo.footage import vtest_path
from drivers.camera import AvCamera, Camera, CameraError, Frame, Picamera2Camera
from tests.support import camera_standin

MakeCamera = Callable[[], Camera]


@pytest.fixture(scope="module")
def footage() -> Path:
    return vtest_path()


@pytest.fixture(params=["av-file", "picamera2"])
def make_camera(request: pytest.FixtureRequest, footage: Path,
                monkeypatch: pytest.MonkeyPatch) -> MakeCamera:
    if request.param == "av-file":
        return lambda: AvCamera(footage, realtime=False)
    camera_standin.install(monkeypatch, footage)
    # 600 px rows are padded to a 640-byte stride, as on the Pi.
    return lambda: Picamera2Camera(0, output_size=(600, 340), fps=10.0)


def take(camera: Camera, n: int) -> list[Frame]:
    return list(itertools.islice(camera.frames(), n))


def test_frames_are_bgr_images_of_the_declared_size(make_camera: MakeCamera) -> None:
    with make_camera() as camera:
        width, height = camera.size
        frames = take(camera, 12)
    assert len(frames) == 12
    for frame in frames:
        assert frame.image.dtype == np.uint8
        assert frame.image.shape == (height, width, 3)
        assert frame.image.flags["C_CONTIGUOUS"]
    # Real pictures, not blank buffers.
    assert all(frame.image.std() > 10 for frame in frames)


def test_indices_count_up_by_one_and_timestamps_never_go_back(make_camera: MakeCamera) -> None:
    with make_camera() as camera:
        frames = take(camera, 30)
    assert [f.index for f in frames] == list(range(30))
    pts = [f.pts_s for f in frames]
    assert all(p is not None for p in pts)
    assert pts == sorted(pts)  # type: ignore[type-var]
    captured = [f.captured_at for f in frames]
    assert captured == sorted(captured)


def test_the_picture_is_in_bgr_order(make_camera: MakeCamera, footage: Path) -> None:
    reference = cv2.VideoCapture(str(footage))
    ok, first = reference.read()
    reference.release()
    assert ok
    with make_camera() as camera:
        frame = take(camera, 1)[0]
        size = camera.size
    expected = cv2.resize(first, size, interpolation=cv2.INTER_AREA).astype(np.int16)
    same = np.abs(frame.image.astype(np.int16) - expected).mean()
    swapped = np.abs(frame.image[:, :, ::-1].astype(np.int16) - expected).mean()
    assert same < 6
    assert same < swapped


def test_close_is_idempotent_and_a_closed_camera_refuses_to_read(
        make_camera: MakeCamera) -> None:
    camera = make_camera()
    camera.open()
    assert camera.is_open
    take(camera, 2)
    camera.close()
    camera.close()
    assert not camera.is_open
    with pytest.raises(CameraError, match="not open"):
        take(camera, 1)


def test_size_is_known_only_after_open(make_camera: MakeCamera) -> None:
    camera = make_camera()
    with pytest.raises(CameraError, match="not open"):
        _ = camera.size
    with camera:
        assert camera.size[0] > 0 and camera.size[1] > 0
        assert camera.fps is not None and camera.fps > 0


def test_the_context_manager_closes_even_when_the_reader_fails(make_camera: MakeCamera) -> None:
    camera = make_camera()
    with pytest.raises(ZeroDivisionError), camera:
        take(camera, 1)
        _ = 1 / 0
    assert not camera.is_open


def test_a_reopened_camera_counts_from_zero_again(make_camera: MakeCamera) -> None:
    camera = make_camera()
    with camera:
        assert [f.index for f in take(camera, 3)] == [0, 1, 2]
    with camera:
        assert [f.index for f in take(camera, 3)] == [0, 1, 2]


def test_open_twice_is_harmless(make_camera: MakeCamera) -> None:
    with make_camera() as camera:
        camera.open()
        assert len(take(camera, 2)) == 2
