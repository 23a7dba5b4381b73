"""Chunk indexes: what an adaptive install compares to move only what changed.

- `ChunkIndex` is a bundle's index: for every chunk of the slot image its SHA-256 and how many
  bytes it takes in the payload (0: all zeros, not stored; its length: stored as is; fewer:
  packed). It travels zlib-packed after the signature; the signed manifest carries its
  SHA-256, so every chunk hash is signed.
- `SlotIndex` is the same for a slot on this node's card (the running one), made once per
  release by reading the slot and kept in the firmware state folder: which chunk of the new
  image can be copied from where.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zlib
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from drivers.storage import write_whole

_ENTRY = struct.Struct(">32sI")
_READ = 1 << 20  # bytes read at once when hashing a slot
_HASH = hashlib.sha256


@lru_cache(maxsize=8)
def zero_digest(length: int) -> bytes:
    """The SHA-256 of `length` zero bytes; there are at most two lengths per image."""
    return _HASH(bytes(length)).digest()


class BadIndex(ValueError):
    """A chunk index that does not fit its manifest (the bundle is damaged or forged)."""


class ChunkIndex:
    """A bundle's chunk index: the digest of chunk i is `digest(i)`, its bytes in the
    payload `stored[i]` (0 for a zero chunk)."""

    def __init__(self, chunk_size: int, image_size: int) -> None:
        self.chunk_size, self.image_size = chunk_size, image_size
        # 32 bytes a chunk: one object, not one per chunk
        self.digests: bytes | bytearray = bytearray()
        self.stored = array("I")
        self._offsets: array[int] | None = None

    def __len__(self) -> int:
        return len(self.stored)

    def digest(self, index: int) -> bytes:
        return bytes(self.digests[32 * index:32 * index + 32])

    def length(self, index: int) -> int:
        return min(self.chunk_size, self.image_size - index * self.chunk_size)

    def add(self, digest: bytes, stored: int) -> None:
        if isinstance(self.digests, bytes):
            self.digests = bytearray(self.digests)
        self.digests += digest
        self.stored.append(stored)

    def offsets(self) -> array[int]:
        """Where each chunk starts in the payload (a zero chunk: where the next would);
        worked out once per index."""
        if self._offsets is None or len(self._offsets) != len(self.stored):
            self._offsets, at = array("Q"), 0
            for size in self.stored:
                self._offsets.append(at)
                at += size
        return self._offsets

    @property
    def payload_size(self) -> int:
        return sum(self.stored)

    def encode(self) -> bytes:
        packer = zlib.compressobj(9)
        parts = [packer.compress(_ENTRY.pack(self.digest(i), size))
                 for i, size in enumerate(self.stored)]
        return b"".join([*parts, packer.flush()])

    @classmethod
    def decode(cls, data: bytes, *, chunk_size: int, image_size: int) -> ChunkIndex:
        """The index as stored in a bundle whose manifest has been verified; BadIndex when
        it does not fit that manifest."""
        count = -(-image_size // chunk_size)
        want = count * _ENTRY.size
        unpacker = zlib.decompressobj()
        try:
            raw = unpacker.decompress(data, want + 1)  # never more than the manifest allows
        except zlib.error as e:
            raise BadIndex(f"the chunk index does not unpack: {e}") from e
        if len(raw) != want or not unpacker.eof or unpacker.unused_data:
            raise BadIndex(f"the chunk index holds {len(raw)} bytes of entries; "
                           f"{count} chunks take {want}")
        index = cls(chunk_size, image_size)
        digests = []
        for i, (digest, stored) in enumerate(_ENTRY.iter_unpack(raw)):
            length = chunk_size if i < count - 1 else index.length(i)
            if stored > length or (stored == 0 and digest != zero_digest(length)):
                raise BadIndex(f"chunk {i}'s entry is not possible (stored {stored} bytes "
                               f"of {length})")
            digests.append(digest)
            index.stored.append(stored)
        index.digests = b"".join(digests)  # bytes: a slice of it is a digest, no copy more
        return index


def digests_of(path: Path, size: int, chunk_size: int) -> Iterator[bytes]:
    """The SHA-256 of each chunk of the first `size` bytes of `path` (a file or a device)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        at, step = 0, max(_READ - _READ % chunk_size, chunk_size)  # whole chunks a read
        while at < size:
            data = os.pread(fd, min(step, size - at), at)
            if not data:
                raise OSError(f"{path} ends at byte {at}, before {size}")
            view = memoryview(data)
            for start in range(0, len(view), chunk_size):
                yield _HASH(view[start:start + chunk_size]).digest()
            at += len(data)
    finally:
        os.close(fd)


@dataclass
class SlotIndex:
    """The chunk digests of a slot's first `size` bytes, as found on the card for `label`
    (32 bytes a chunk, in order)."""

    label: str
    chunk_size: int
    size: int
    digests: bytes

    def digest(self, index: int) -> bytes:
        return self.digests[32 * index:32 * index + 32]

    def where(self) -> dict[int, int]:
        """Where each non-zero chunk is first found, keyed by the first 8 bytes of its
        digest (a false match fails the full check when it is copied, and is fetched)."""
        zero = zero_digest(self.chunk_size)
        found: dict[int, int] = {}
        for i in range(len(self.digests) // 32):
            digest = self.digest(i)
            if digest != zero:
                found.setdefault(key(digest), i * self.chunk_size)
        return found

    @classmethod
    def scan(cls, device: Path, *, label: str, chunk_size: int) -> SlotIndex:
        size = _size(device)
        size -= size % chunk_size
        return cls(label, chunk_size, size, b"".join(digests_of(device, size, chunk_size)))

    @classmethod
    def of(cls, index: ChunkIndex, label: str) -> SlotIndex:
        """What a slot holds once `index`'s image is installed in it."""
        return cls(label, index.chunk_size, index.image_size, bytes(index.digests))

    def save(self, path: Path) -> None:
        head = json.dumps({"label": self.label, "chunk_size": self.chunk_size,
                           "size": self.size}).encode()
        write_whole(path, struct.pack(">I", len(head)) + head + self.digests)

    @classmethod
    def load(cls, path: Path) -> SlotIndex | None:
        """The index kept at `path`, or None when it is missing or damaged."""
        try:
            data = path.read_bytes()
            length = struct.unpack(">I", data[:4])[0]
            head = json.loads(data[4:4 + length])
            body = data[4 + length:]
            chunk, size = int(head["chunk_size"]), int(head["size"])
            if len(body) != 32 * -(-size // chunk):
                return None
            return cls(str(head["label"]), chunk, size, body)
        except (OSError, ValueError, KeyError, TypeError, struct.error):
            return None


def key(digest: bytes) -> int:
    return int.from_bytes(digest[:8], "big")


def _size(path: Path) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)
