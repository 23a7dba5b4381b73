"""The shared-memory frame ring between the camera worker and the detection worker."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import uuid

import numpy as np
import pytest

from edge.vision.framebus import FrameRing


def frame(value: int, w: int = 64, h: int = 48) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = value % 256
    img[0, 0, 1] = value // 256
    return img


@pytest.fixture
def ring_name() -> str:
    return f"sce-test-{uuid.uuid4().hex[:8]}"


def test_reader_gets_the_newest_frame_and_counts_the_skipped(ring_name: str) -> None:
    ring = FrameRing.create(ring_name, 64, 48, slots=4)
    reader = FrameRing.attach(ring_name)
    for i in range(1, 4):
        assert ring.write(frame(i), pts_s=i / 10, captured_at=float(i))
    got = reader.read(timeout_s=0.5)
    assert got is not None
    assert (got.seq, got.skipped, got.pts_s, got.captured_at) == (3, 2, 0.3, 3.0)
    assert int(got.image[0, 0, 0]) == 3 and got.image.shape == (48, 64, 3)
    assert reader.read(timeout_s=0.01) is None  # nothing new
    reader.close()
    ring.close()


def test_frames_of_different_sizes_share_the_ring(ring_name: str) -> None:
    ring = FrameRing.create(ring_name, 64, 48, slots=2)
    reader = FrameRing.attach(ring_name)
    ring.write(frame(5, w=32, h=24), pts_s=None, captured_at=1.0)
    got = reader.read(timeout_s=0.5)
    assert got is not None and got.image.shape == (24, 32, 3) and got.pts_s is None
    with pytest.raises(ValueError, match="does not fit"):
        ring.write(frame(1, w=128, h=96), pts_s=None, captured_at=1.0)
    reader.close()
    ring.close()


def test_lossless_mode_delivers_every_frame_in_order_and_the_writer_waits(
    ring_name: str,
) -> None:
    ring = FrameRing.create(ring_name, 64, 48, slots=3, lossless=True)
    reader = FrameRing.attach(ring_name)
    assert ring.write(frame(1), None, 0.0) and ring.write(frame(2), None, 0.0)
    assert ring.write(frame(3), None, 0.0, wait_s=0.01) is False  # full: reader has not read
    first = reader.read(0.5)
    assert first is not None and first.seq == 1 and first.skipped == 0
    assert ring.write(frame(3), None, 0.0, wait_s=0.01)
    seqs = [f.seq for f in iter(lambda: reader.read(0.01), None)]
    assert seqs == [2, 3]
    reader.close()
    ring.close()


def _reader_process(name: str, count: int, out: mp.Queue) -> None:  # type: ignore[type-arg]
    ring = FrameRing.attach(name)
    got: list[tuple[int, bool]] = []
    while len(got) < count:
        f = ring.read(timeout_s=5)
        if f is None:
            break
        # every copied frame is whole: the marker written last matches the fill value
        whole = bool((f.image[..., 0] == f.seq % 256).all()) and int(f.image[0, 0, 1]) == (
            f.seq // 256
        )
        got.append((f.seq, whole))
    out.put(got)
    ring.close()


def test_another_process_never_sees_a_torn_frame(ring_name: str) -> None:
    ring = FrameRing.create(ring_name, 320, 240, slots=3)
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    p = ctx.Process(target=_reader_process, args=(ring_name, 200, out))
    p.start()
    seq = 0
    deadline = time.monotonic() + 60
    while p.is_alive() and time.monotonic() < deadline:
        seq += 1
        ring.write(frame(seq, 320, 240), None, time.monotonic())
    got = out.get(timeout=10)
    p.join(10)
    assert len(got) == 200
    assert all(whole for _, whole in got)
    seqs = [s for s, _ in got]
    assert seqs == sorted(set(seqs))
    ring.close()
    assert not os.path.exists(f"/dev/shm/{ring_name}")


def test_a_ring_left_by_a_killed_owner_is_taken_over(ring_name: str) -> None:
    old = FrameRing.create(ring_name, 8, 8, slots=2)
    old.write(frame(9, 8, 8), None, 0.0)
    new = FrameRing.create(ring_name, 16, 16, slots=2)  # the old owner never unlinked it
    assert new.written == 0 and new.capacity == 16 * 16 * 3
    new.close()
    old._owner = False
    old.close()
