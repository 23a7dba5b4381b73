"""Installing a bundle into the root slot the node is not running, moving only what changed.

The bundle's head and chunk index come first; nothing is written until the signature, the
fit and the index are checked. Then each chunk of the new image comes from the cheapest
place that holds it:

- all zeros: written without bytes (BLKZEROOUT on a block device, a hole in a file);
- the running slot: at the same offset, or anywhere else through the running slot's index;
- the bundle: only the missing chunks, fetched with ranged reads of the same file.

Every chunk that is written was hashed first and matched against the signed index, whether
it came from the running slot or from the bundle. A copy that does not match (the running
slot's index was stale) is fetched instead. Chunk 0, with the filesystem's superblock, is
cleared first and written last, so a slot cut short never looks like a system.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import os
import stat
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from firmware.bundle import (
    Reader,
    Refused,
    check,
    read_exactly,
    read_head,
    read_index,
    unpack,
    verify,
)
from firmware.chunks import ChunkIndex, SlotIndex, key
from firmware.manifest import Manifest
from firmware.release import Release
from firmware.sources import Ahead, Source

GAP = 64 << 10  # fetch the bytes between two missing chunks rather than ask again
_RUN = 1 << 20  # bytes copied from the running slot at once
_BLKZEROOUT = 0x127F  # _IO(0x12, 127)
_PUNCH_HOLE, _KEEP_SIZE = 0x02, 0x01


@dataclass
class Tally:
    """What an install has done: image bytes done of `total`, and where they came from."""

    total: int = 0
    done: int = 0
    downloaded: int = 0  # bundle bytes fetched (head and index included)
    reused: int = 0  # image bytes copied from the running slot
    zeroed: int = 0  # image bytes that are zeros, written without data


Progress = Callable[[Tally], None]


@dataclass
class Running:
    """The slot the node runs: its device, and its chunk index for a chunk size (kept on the
    card once made; made by reading the slot when missing)."""

    device: Path
    index: Callable[[int], SlotIndex]


@dataclass
class Installed:
    manifest: Manifest
    index: ChunkIndex
    tally: Tally = field(default_factory=Tally)


def install(source: Source, target: Path, *, keys: list[Ed25519PublicKey], board: str,
            installed: Release | None, running: Running | None = None,
            slot_size: int | None = None, progress: Progress | None = None) -> Installed:
    """Write the image of the bundle at `source` into `target` (the slot's block device, or a
    file of the slot's size).

    With `running`, chunks the running slot holds are copied from it and only the others are
    fetched; without, the bundle is read once from start to end (a stream: a pipe, or a
    download whose whole file is checked against a SHA-256).

    Refused when the bundle is not one this node may install (before a byte is written), or
    when a chunk does not match the index (the slot then holds no valid start and must not be
    booted). `slot_size` defaults to the size of `target`."""
    tally = Tally()
    head_stream: Reader = Ahead(source) if running else source.open(0, None)

    def moved() -> None:
        tally.downloaded = source.transferred
        if progress is not None:
            progress(tally)

    try:
        return _install(source, head_stream, target, keys=keys, board=board,
                        installed=installed, running=running, slot_size=slot_size,
                        tally=tally, moved=moved)
    finally:  # a refused bundle's download is not left open
        getattr(head_stream, "close", lambda: None)()


def _install(source: Source, head_stream: Reader, target: Path, *,
             keys: list[Ed25519PublicKey], board: str, installed: Release | None,
             running: Running | None, slot_size: int | None, tally: Tally,
             moved: Callable[[], None]) -> Installed:
    head = read_head(head_stream)
    manifest = verify(head, keys)
    fd = os.open(target, os.O_WRONLY | os.O_CLOEXEC)
    try:
        size = os.lseek(fd, 0, os.SEEK_END) if slot_size is None else slot_size
        check(manifest, board=board, installed=installed, slot_size=size)
        index = read_index(head_stream, head, manifest)
        tally.total = manifest.image_size
        writer = _Writer(fd, index)
        writer.zero(0, index.length(0))  # no superblock until the last write
        os.fsync(fd)
        payload_at = head.length + manifest.index_size
        if running is None:
            missing = [i for i in range(len(index)) if index.stored[i]]
            writer.zeros(tally, moved)
            _fetch(writer, manifest, index, payload_at, [(head_stream, missing)], tally, moved)
        else:
            missing = writer.local(running, tally, moved)
            _fetch(writer, manifest, index, payload_at,
                   _segments(source, _spans(index, missing, payload_at)), tally, moved)
        os.fsync(fd)
        _write_at(fd, writer.first, 0)  # chunk 0 last
        os.fsync(fd)
    finally:
        os.close(fd)
    moved()
    return Installed(manifest, index, tally)


class _Writer:
    """Writes checked chunks into the target slot and keeps chunk 0 for the end."""

    def __init__(self, fd: int, index: ChunkIndex) -> None:
        self.fd, self.index = fd, index
        self.size = index.chunk_size
        self.first = b""
        self.block = stat.S_ISBLK(os.fstat(fd).st_mode)

    def put(self, number: int, data: bytes) -> None:
        if number == 0:
            self.first = data
        else:
            _write_at(self.fd, data, number * self.size)

    def zero(self, offset: int, length: int) -> None:
        _zero(self.fd, offset, length, block=self.block)

    def zeros(self, tally: Tally, moved: Callable[[], None]) -> None:
        """Every run of zero chunks, cleared without writing bytes."""
        stored, count = self.index.stored, len(self.index)
        i = 0
        while i < count:
            if stored[i]:
                i += 1
                continue
            j = i
            while j < count and not stored[j]:
                j += 1
            start, end = i * self.size, min(j * self.size, self.index.image_size)
            if i == 0:
                self.first = bytes(self.index.length(0))
                start = self.size
            if end > start:
                self.zero(start, end - start)
            tally.zeroed += end - i * self.size
            tally.done += end - i * self.size
            moved()
            i = j

    def local(self, running: Running, tally: Tally, moved: Callable[[], None]) -> list[int]:
        """Zero runs, then every chunk the running slot holds, checked as it is copied;
        returns the chunks left to fetch."""
        self.zeros(tally, moved)
        index, size = self.index, self.size
        slot = running.index(size)
        where, have = slot.where(), len(slot.digests) // 32
        missing: list[int] = []
        src = os.open(running.device, os.O_RDONLY | os.O_CLOEXEC)
        try:
            run: list[tuple[int, int, bytes]] = []  # (chunk, offset in the running slot, digest)

            def flush() -> None:
                self._copy(src, run, missing, tally)
                run.clear()
                moved()

            for i in range(len(index)):
                if not index.stored[i]:
                    continue
                digest = index.digest(i)
                at = i * size if i < have and slot.digest(i) == digest else where.get(key(digest))
                if at is None:
                    missing.append(i)
                    continue
                if run and (at != run[-1][1] + size or len(run) * size >= _RUN):
                    flush()
                run.append((i, at, digest))
            if run:
                flush()
        finally:
            os.close(src)
        return sorted(missing)

    def _copy(self, src: int, run: list[tuple[int, int, bytes]], missing: list[int],
              tally: Tally) -> None:
        """Copy chunks found back to back in the running slot; their hashes decide. Chunks
        that are also back to back in the new image go out in one write."""
        index, size = self.index, self.size
        start = run[0][1]
        data = os.pread(src, len(run) * size, start)
        view = memoryview(data)
        batch: tuple[int, int, int] | None = None  # (first chunk, from, to) in `data`

        def flush() -> None:
            if batch is not None:
                first, lo, hi = batch
                if first == 0:
                    self.first = bytes(view[lo:lo + index.length(0)])
                    first, lo = 1, lo + index.length(0)
                if hi > lo:
                    _write_at(self.fd, view[lo:hi], first * size)

        last, sha256 = len(index) - 1, hashlib.sha256
        for number, at, digest in run:
            length = size if number != last else index.length(number)
            lo = at - start
            piece = view[lo:lo + length]
            if len(piece) < length or sha256(piece).digest() != digest:
                missing.append(number)
                continue
            tally.reused += length
            tally.done += length
            if batch is not None and number == batch[0] + (batch[2] - batch[1]) // size \
                    and lo == batch[2]:
                batch = (batch[0], batch[1], lo + length)
            else:
                flush()
                batch = (number, lo, lo + length)
        flush()


def _spans(index: ChunkIndex, missing: list[int],
           payload_at: int) -> list[tuple[int, int, list[int]]]:
    """The missing chunks as ranged reads of the bundle: (start, length, chunks), chunks close
    together in the payload read in one request."""
    offsets = index.offsets()
    spans: list[tuple[int, int, list[int]]] = []
    for number in missing:
        start, length = payload_at + offsets[number], index.stored[number]
        if spans and start - (spans[-1][0] + spans[-1][1]) <= GAP:
            first, _, chunks = spans[-1]
            spans[-1] = (first, start + length - first, [*chunks, number])
        else:
            spans.append((start, length, [number]))
    return spans


def _segments(source: Source, spans: list[tuple[int, int, list[int]]]
              ) -> Iterator[tuple[Reader, list[int]]]:
    """A stream for each span; from a server that ignores Range (it sends the whole file from
    its start each time), one stream from the first span on that reads through all of them."""
    for n, (start, length, chunks) in enumerate(spans):
        stream = source.open(start, length)
        if getattr(stream, "ranged", True):
            yield stream, chunks
            continue
        getattr(stream, "close", lambda: None)()
        yield source.open(start, None), [number for _, _, rest in spans[n:] for number in rest]
        return


def _fetch(writer: _Writer, manifest: Manifest, index: ChunkIndex, payload_at: int,
           segments: Iterable[tuple[Reader, list[int]]], tally: Tally,
           moved: Callable[[], None]) -> None:
    """Read, check and write the chunks of each segment: a stream of the bundle that starts
    at the first of its chunks, and those chunks in order (reading the bytes between them)."""
    offsets, count = index.offsets(), len(index)
    for stream, chunks in segments:
        try:
            at = payload_at + offsets[chunks[0]] if chunks else 0
            for number in chunks:
                gap = payload_at + offsets[number] - at
                if gap and len(read_exactly(stream, gap)) < gap:
                    raise _short(manifest, number, count, gap)
                stored, length = index.stored[number], index.length(number)
                raw = read_exactly(stream, stored)
                at = payload_at + offsets[number] + len(raw)
                if len(raw) < stored:
                    raise _short(manifest, number, count, stored - len(raw))
                try:
                    data = unpack(raw, length, manifest.compression)
                except ValueError:
                    data = b""
                if hashlib.sha256(data).digest() != index.digest(number):
                    raise Refused("tampered", f"chunk {number + 1} of {count} does not match "
                                  "its SHA-256: the bundle was altered or damaged in transit; "
                                  "nothing was switched")
                writer.put(number, data)
                tally.done += length
                moved()
        finally:
            getattr(stream, "close", lambda: None)()


def _short(manifest: Manifest, number: int, count: int, short: int) -> Refused:
    return Refused("truncated", f"the bundle ends in chunk {number + 1} of {count} of "
                   f"{manifest.label()}, {short} bytes short: the download was cut short; "
                   "nothing was switched, fetch it again")


def _write_at(fd: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]


def _zero(fd: int, offset: int, length: int, *, block: bool) -> None:
    """Make `length` bytes at `offset` read as zeros, without writing them where the device
    or filesystem can: BLKZEROOUT on a block device, a punched hole in a file."""
    if length <= 0:
        return
    try:
        if block:
            fcntl.ioctl(fd, _BLKZEROOUT, struct.pack("QQ", offset, length))
            return
        if _libc.fallocate(fd, _PUNCH_HOLE | _KEEP_SIZE, offset, length) == 0:
            return
    except OSError:
        pass
    zeros = bytes(min(length, _RUN))
    while length:
        step = min(length, len(zeros))
        _write_at(fd, zeros[:step], offset)
        offset, length = offset + step, length - step
