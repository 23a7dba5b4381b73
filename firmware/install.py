"""Installing a bundle into the root slot the node is not running, straight from its stream
(a file, an HttpStream): no copy on disk, one chunk in memory at a time. Nothing is written
until the bundle's signature and fit are checked, and no chunk is written before its SHA-256
matches the signed manifest."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from firmware.bundle import Reader, Refused, check, read_exactly, read_head, verify
from firmware.manifest import Manifest
from firmware.release import Release

Progress = Callable[[int, int], None]


def install(stream: Reader, target: Path, *, keys: list[Ed25519PublicKey], board: str,
            installed: Release | None, slot_size: int | None = None,
            progress: Progress | None = None) -> Manifest:
    """Write the image of the bundle read from `stream` into `target` (the slot's block
    device, or a file of the slot's size) and return its manifest.

    Refused when the bundle is not one this node may install (before a byte is written), or
    when a chunk or the whole image does not match the manifest (the slot then holds no valid
    start and must not be booted). `slot_size` defaults to the size of `target`;
    `progress(bytes_done, image_size)` is called after each chunk."""
    manifest = verify(read_head(stream), keys)
    fd = os.open(target, os.O_WRONLY | os.O_CLOEXEC)
    try:
        size = os.lseek(fd, 0, os.SEEK_END) if slot_size is None else slot_size
        check(manifest, board=board, installed=installed, slot_size=size)
        first = _write_chunks(stream, fd, manifest, progress)
        os.fsync(fd)
        # Chunk 0 last: a slot cut off mid-write has no partition start or ext4 superblock.
        _write_at(fd, first, 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    return manifest


def _write_chunks(stream: Reader, fd: int, manifest: Manifest,
                  progress: Progress | None) -> bytes:
    """Check and write every chunk but the first, which is checked and returned."""
    count, whole = len(manifest.chunks), hashlib.sha256()
    zeros = bytes(manifest.chunk_size)
    first, done = b"", 0
    for index, chunk in enumerate(manifest.chunks):
        length = manifest.length(index)
        if chunk.zero:
            data = zeros if length == manifest.chunk_size else bytes(length)
        else:
            data = read_exactly(stream, length)
            if len(data) < length:
                raise Refused("truncated", f"the bundle ends in chunk {index + 1} of {count} "
                              f"of {manifest.label()}, {length - len(data)} bytes short: the "
                              "download was cut short; nothing was switched, fetch it again")
        if hashlib.sha256(data).hexdigest() != chunk.sha256:
            raise Refused("tampered", f"chunk {index + 1} of {count} does not match its SHA-256:"
                          " the bundle was altered or damaged in transit; nothing was switched")
        whole.update(data)
        if index == 0:
            first = data
        else:
            _write_at(fd, data, index * manifest.chunk_size)
        done += length
        if progress is not None:
            progress(done, manifest.image_size)
    if whole.hexdigest() != manifest.image_sha256:
        raise Refused("tampered", f"the image of {manifest.label()} does not match its SHA-256 "
                      "although each chunk did: the bundle was made wrongly; nothing was "
                      "switched, make it again")
    return first


def _write_at(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written
