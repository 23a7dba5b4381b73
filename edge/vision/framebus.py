"""Frames from a camera worker to a detection worker through shared memory, never pickled.

A `FrameRing` is a few frame slots in one POSIX shared-memory block plus a small header.
The camera worker writes each frame into the next slot; the detection worker copies out
the newest frame (live cameras: stale frames are skipped, not queued) or, in lossless
mode (benchmarks on files), every frame in order while the writer waits for it.

Each slot is guarded by a sequence number (a seqlock): the writer marks a slot busy, copies
the pixels, then publishes the frame's sequence number; the reader checks the number before
and after its copy, so it never returns a half-written frame. One writer, one reader.

The supervisor in the main process creates the ring's block (`edge.vision.ringblock`, which
also holds the layout; the main process never loads numpy) and unlinks it when it stops;
the workers attach to it by name, so a restarted worker finds the same ring.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from multiprocessing import shared_memory

import numpy as np
import numpy.typing as npt

from edge.vision.ringblock import (
    H_CAPACITY,
    H_LOSSLESS,
    H_MAGIC,
    H_READ,
    H_SLOTS,
    H_WRITTEN,
    HEADER_WORDS,
    MAGIC,
    SLOT_WORDS,
    RingBlock,
)

_BUSY = -1


@dataclass(frozen=True, slots=True)
class RingFrame:
    """One frame as the reader got it: a private copy, safe to keep."""

    seq: int
    image: npt.NDArray[np.uint8]
    pts_s: float | None
    captured_at: float
    skipped: int  # frames the writer published since the previous read that were not read


class FrameRing:
    """A ring of frame slots in shared memory. Use `create` in the owner, `attach` in workers."""

    def __init__(self, shm: shared_memory.SharedMemory, owner: bool) -> None:
        self._shm = shm
        self._owner = owner
        words = np.ndarray((HEADER_WORDS,), dtype=np.int64, buffer=shm.buf)
        if int(words[H_MAGIC]) != MAGIC:
            raise ValueError(f"shared memory {shm.name!r} is not a frame ring")
        self.capacity = int(words[H_CAPACITY])
        self.slots = int(words[H_SLOTS])
        self._header = words
        self._meta = np.ndarray(
            (self.slots, SLOT_WORDS), dtype=np.int64, buffer=shm.buf,
            offset=HEADER_WORDS * 8,
        )
        self._floats = self._meta.view(np.float64)
        data_offset = (HEADER_WORDS + self.slots * SLOT_WORDS) * 8
        self._data = np.ndarray(
            (self.slots, self.capacity), dtype=np.uint8, buffer=shm.buf, offset=data_offset
        )
        self._last_read = int(words[H_READ])

    @classmethod
    def create(
        cls, name: str, max_width: int, max_height: int, slots: int = 4,
        lossless: bool = False,
    ) -> FrameRing:
        """A new ring big enough for BGR frames up to max_width × max_height."""
        return cls(RingBlock.create(name, max_width, max_height, slots, lossless).shm,
                   owner=True)

    @classmethod
    def attach(cls, name: str) -> FrameRing:
        return cls(shared_memory.SharedMemory(name=name), owner=False)

    @property
    def name(self) -> str:
        return self._shm.name

    @property
    def lossless(self) -> bool:
        return bool(self._header[H_LOSSLESS])

    @property
    def written(self) -> int:
        return int(self._header[H_WRITTEN])

    def fits(self, width: int, height: int) -> bool:
        return width * height * 3 <= self.capacity

    # --- writer side (camera worker) ---

    def write(
        self, image: npt.NDArray[np.uint8], pts_s: float | None, captured_at: float,
        wait_s: float = 1.0,
    ) -> bool:
        """Publish one frame. In lossless mode, waits (up to wait_s) for the reader to make
        room; False if it did not (the reader is gone or stuck), and nothing is written."""
        h, w = image.shape[:2]
        if not self.fits(w, h):
            raise ValueError(f"frame {w}x{h} does not fit a ring slot of {self.capacity} bytes")
        seq = self.written + 1
        if self.lossless:
            deadline = time.monotonic() + wait_s
            while seq - int(self._header[H_READ]) >= self.slots:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.0005)
        slot = seq % self.slots
        meta = self._meta[slot]
        meta[0] = _BUSY
        n = w * h * 3
        self._data[slot, :n] = image.reshape(-1)
        meta[1], meta[2] = w, h
        self._floats[slot, 3] = np.nan if pts_s is None else pts_s
        self._floats[slot, 4] = captured_at
        meta[0] = seq
        self._header[H_WRITTEN] = seq
        return True

    # --- reader side (detection worker) ---

    def read(self, timeout_s: float) -> RingFrame | None:
        """The next frame to process, or None if none arrives within timeout_s.

        Live mode: the newest frame (older unread ones count as skipped). Lossless mode:
        the next frame in order."""
        deadline = time.monotonic() + timeout_s
        while True:
            written = self.written
            if written > self._last_read:
                want = self._last_read + 1 if self.lossless else written
                want = max(want, written - self.slots + 1)  # older ones are overwritten
                frame = self._copy(want)
                if frame is not None:
                    skipped = want - self._last_read - 1
                    self._last_read = want
                    self._header[H_READ] = want
                    return RingFrame(frame[0], frame[1], frame[2], frame[3], skipped)
                continue  # overwritten while copying: try the newest again
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.001)

    def _copy(
        self, seq: int
    ) -> tuple[int, npt.NDArray[np.uint8], float | None, float] | None:
        slot = seq % self.slots
        meta = self._meta[slot]
        if int(meta[0]) != seq:
            return None
        w, h = int(meta[1]), int(meta[2])
        pts = float(self._floats[slot, 3])
        captured = float(self._floats[slot, 4])
        image = self._data[slot, : w * h * 3].reshape(h, w, 3).copy()
        if int(meta[0]) != seq:  # the writer came round while we copied
            return None
        return seq, image, None if np.isnan(pts) else pts, captured

    def close(self) -> None:
        # Drop our numpy views first: SharedMemory.close() refuses while buffers are exported.
        del self._header, self._meta, self._floats, self._data
        self._shm.close()
        if self._owner:
            with contextlib.suppress(FileNotFoundError):
                self._shm.unlink()
