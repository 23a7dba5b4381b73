"""The frame ring's shared-memory block: its layout, and its creation and removal.

The supervisor in the main process owns each camera's block: it creates it (taking over
one a killed node left behind) and unlinks it when it stops. It never reads or writes a
frame, so this module needs no numpy; the workers map the same layout as arrays through
`edge.vision.framebus.FrameRing`.

Layout, all words int64 in native byte order: a header of `HEADER_WORDS` (magic, slot
capacity in bytes, slots, lossless, written seq, read seq, 2 spare), then `SLOT_WORDS` per
slot (seq, width, height, pts and captured_at as float64 bits), then the slots' pixels.
"""

from __future__ import annotations

import contextlib
import struct
from multiprocessing import shared_memory

MAGIC = 0x5343_4652  # "SCFR"
# header words: magic, slot capacity in bytes, slots, lossless, written seq, read seq
H_MAGIC, H_CAPACITY, H_SLOTS, H_LOSSLESS, H_WRITTEN, H_READ = range(6)
HEADER_WORDS = 8
# per-slot words: seq, width, height, pts (float64 bits), captured_at (float64 bits)
SLOT_WORDS = 5
_WORD = struct.Struct("=q")


def block_size(capacity: int, slots: int) -> int:
    return (HEADER_WORDS + slots * SLOT_WORDS) * 8 + slots * capacity


class RingBlock:
    """One camera's ring in shared memory, as its owner holds it: a name and a close()."""

    def __init__(self, shm: shared_memory.SharedMemory) -> None:
        self.shm = shm

    @classmethod
    def create(
        cls, name: str, max_width: int, max_height: int, slots: int = 4,
        lossless: bool = False,
    ) -> RingBlock:
        """A new, empty ring big enough for BGR frames up to max_width × max_height."""
        if slots < 2:
            raise ValueError("a frame ring needs at least 2 slots")
        capacity = max_width * max_height * 3
        try:  # a ring left behind by a killed node: take its name over
            stale = shared_memory.SharedMemory(name=name)
            stale.close()
            stale.unlink()
        except FileNotFoundError:
            pass
        shm = shared_memory.SharedMemory(name=name, create=True, size=block_size(capacity, slots))
        buf = shm.buf
        if buf is None:  # only after close(); never for a block just made
            raise ValueError(f"shared memory {name!r} is not mapped")
        for word in range(HEADER_WORDS + slots * SLOT_WORDS):
            _WORD.pack_into(buf, word * 8, 0)
        _WORD.pack_into(buf, H_CAPACITY * 8, capacity)
        _WORD.pack_into(buf, H_SLOTS * 8, slots)
        _WORD.pack_into(buf, H_LOSSLESS * 8, int(lossless))
        _WORD.pack_into(buf, H_MAGIC * 8, MAGIC)  # last: a ring is valid only once initialised
        del buf
        return cls(shm)

    @property
    def name(self) -> str:
        return self.shm.name

    def close(self) -> None:
        """Unmap and remove the block; workers still attached keep their mapping."""
        self.shm.close()
        with contextlib.suppress(FileNotFoundError):
            self.shm.unlink()
