"""The firmware bundle: one file that carries a slot image, signed, in an order a node can
stream. Everything a node needs to refuse a bundle comes before the payload:

    MAGIC (8 bytes) | u32 manifest length | manifest JSON | u16 signature length (0 or 64)
    | Ed25519 signature of the manifest bytes | chunk index (firmware.chunks, zlib)
    | payload: the image's non-zero chunks in order, each packed when that made it smaller

make() writes one; read_head(), verify(), check() and read_index() are the refusals an
installer runs before it writes a byte; Refused says which refusal, for telemetry, and why,
for a person. The index lets a node fetch only the chunks it does not already hold
(firmware.install), with ranged reads of the same file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import ValidationError

from drivers.storage import replace_synced
from firmware.chunks import BadIndex, ChunkIndex, zero_digest
from firmware.keys import key_id
from firmware.manifest import CHUNK_SIZE, Compression, Manifest
from firmware.release import Release

MAGIC = b"SCEFWB1\n"
SIGNATURE_SIZE = 64
MAX_MANIFEST = 1 << 20  # a manifest is a few hundred bytes; the chunk hashes are in the index

Reason = Literal["not_a_bundle", "unsigned", "bad_signature", "untrusted_key", "wrong_board",
                 "older", "same_version", "too_big", "tampered", "truncated", "malformed"]


class Refused(Exception):
    """The node will not install this bundle: `reason` is a code for telemetry, the message
    says what was wrong and what to do."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason: Reason = reason


class Reader(Protocol):
    """What a bundle is read from: an open file, an HttpStream, a pipe."""

    def read(self, size: int = ..., /) -> bytes | None: ...


@dataclass(frozen=True)
class Head:
    """A bundle's head as read, before it is trusted: the manifest bytes as signed, the
    signature (b"" when unsigned), the parsed manifest, and the bytes before the index."""

    manifest_bytes: bytes
    signature: bytes
    manifest: Manifest
    length: int


def make(image: Path, out: Path, *, key: Ed25519PrivateKey | None, version: str, build: int,
         commit: str, boards: list[str] | tuple[str, ...], downgrade: bool = False,
         chunk_size: int = CHUNK_SIZE, compression: Compression = "zlib",
         created: str | None = None) -> Manifest:
    """Write the bundle of the slot image `image` to `out` and return its manifest.

    The image is read once: each chunk is hashed into the index and, unless it is all zeros,
    stored (packed when `compression` makes it smaller). Same inputs, same bytes: `created`
    defaults to SOURCE_DATE_EPOCH, else now. `key` None makes an unsigned bundle, which every
    node refuses (tests use it to check that)."""
    size = image.stat().st_size
    index = ChunkIndex(chunk_size, size)
    whole = hashlib.sha256()
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    payload = out.with_name(f".{out.name}.{os.getpid()}.payload")
    try:
        with image.open("rb") as f, payload.open("wb") as w:
            while data := f.read(chunk_size):
                whole.update(data)
                if data.count(0) == len(data):
                    index.add(zero_digest(len(data)), 0)
                    continue
                stored = _pack(data, compression)
                index.add(hashlib.sha256(data).digest(), len(stored))
                w.write(stored)
            if f.tell() != size:
                raise ValueError(f"{image} changed size while it was read; make the bundle "
                                 "again from an image nothing writes to")
        packed = index.encode()
        manifest = Manifest(
            format=2, version=version, build=build, commit=commit, boards=list(boards),
            image_size=size, chunk_size=chunk_size, compression=compression,
            index_size=len(packed), index_sha256=hashlib.sha256(packed).hexdigest(),
            payload_size=index.payload_size, image_sha256=whole.hexdigest(),
            downgrade=downgrade, created=created or _created(),
            key_id=key_id(key) if key else "")
        body = manifest.canonical()
        signature = key.sign(body) if key else b""
        with tmp.open("wb") as w, payload.open("rb") as r:
            w.write(MAGIC + struct.pack(">I", len(body)) + body)
            w.write(struct.pack(">H", len(signature)) + signature)
            w.write(packed)
            shutil.copyfileobj(r, w, 1 << 20)
            w.flush()
            os.fsync(w.fileno())
        replace_synced(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
        payload.unlink(missing_ok=True)
    return manifest


def _pack(data: bytes, compression: Compression) -> bytes:
    if compression == "zlib":
        packed = zlib.compress(data, 6)
        if len(packed) < len(data):
            return packed
    return data


def unpack(stored: bytes, length: int, compression: Compression) -> bytes:
    """A chunk as it was before `_pack`; its hash, checked by the caller, says if it is."""
    if len(stored) == length:
        return stored
    if compression != "zlib":
        raise ValueError(f"a chunk stored in {len(stored)} bytes of {length}, unpacked")
    unpacker = zlib.decompressobj()
    try:
        data = unpacker.decompress(stored, length + 1)
    except zlib.error as e:
        raise ValueError(f"a packed chunk does not unpack: {e}") from e
    return data


def read_head(stream: Reader) -> Head:
    """Read a bundle's head, up to the first byte of its payload, and parse its manifest."""
    magic = read_exactly(stream, len(MAGIC))
    if magic != MAGIC:
        if MAGIC.startswith(magic):
            raise _truncated(len(magic), "its magic")
        raise Refused("not_a_bundle", f"this is not a firmware bundle: it starts with "
                      f"{magic!r}, a bundle with {MAGIC!r}; give the release's signed bundle, "
                      "not its disk or slot image")
    length = struct.unpack(">I", _exactly(stream, 4, 8, "the manifest length"))[0]
    if not 0 < length <= MAX_MANIFEST:
        raise Refused("malformed", f"the bundle says its manifest is {length} bytes long; it "
                      "is damaged or not made by `firmware.bundle.make`: make it again")
    body = _exactly(stream, length, 12, "the manifest")
    signed = struct.unpack(">H", _exactly(stream, 2, 12 + length, "the signature length"))[0]
    if signed not in (0, SIGNATURE_SIZE):
        raise Refused("malformed", f"the bundle's signature is {signed} bytes long, an Ed25519 "
                      "signature 64: the bundle is damaged; fetch it again")
    signature = _exactly(stream, signed, 14 + length, "the signature")
    try:
        manifest = Manifest.model_validate_json(body)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "manifest"
        raise Refused("malformed", f"the bundle's manifest is not valid ({where}: "
                      f"{first['msg']}): the bundle is damaged or made by an incompatible "
                      "tool; make it again with this release's tools") from e
    return Head(body, signature, manifest, 14 + length + signed)


def read_index(stream: Reader, head: Head, manifest: Manifest) -> ChunkIndex:
    """The chunk index that follows the head of a bundle whose `manifest` was verified."""
    packed = _exactly(stream, manifest.index_size, head.length, "the chunk index")
    if hashlib.sha256(packed).hexdigest() != manifest.index_sha256:
        raise Refused("tampered", f"the chunk index of {manifest.label()} does not match its "
                      "SHA-256 in the signed manifest: the bundle was altered or damaged in "
                      "transit; nothing was written, fetch it again")
    try:
        index = ChunkIndex.decode(packed, chunk_size=manifest.chunk_size,
                                  image_size=manifest.image_size)
    except BadIndex as e:
        raise Refused("malformed", f"bundle {manifest.label()} was signed with a chunk index "
                      f"that does not fit it ({e}): make it again with this release's "
                      "tools") from e
    if index.payload_size != manifest.payload_size:
        raise Refused("malformed", f"the chunk index of {manifest.label()} stores "
                      f"{index.payload_size} bytes, its manifest says {manifest.payload_size}: "
                      "make the bundle again with this release's tools")
    return index


def verify(head: Head, keys: list[Ed25519PublicKey]) -> Manifest:
    """The manifest, once its signature holds under one of the trusted `keys`."""
    manifest = head.manifest
    if not head.signature:
        raise Refused("unsigned", f"bundle {manifest.label()} is not signed; this node installs "
                      "only bundles signed with a trusted release key: sign it and send it again")
    trusted = {key_id(key): key for key in keys}
    key = trusted.get(manifest.key_id)
    if key is None:
        known = ", ".join(trusted) or "no key at all"
        raise Refused("untrusted_key", f"bundle {manifest.label()} is signed with release key "
                      f"{manifest.key_id or '(none named)'}, which this node does not trust "
                      f"(it trusts {known}); sign it with a trusted key, or first install a "
                      "release whose image trusts this key")
    try:
        key.verify(head.signature, head.manifest_bytes)
    except InvalidSignature as e:
        raise Refused("bad_signature", f"the signature of bundle {manifest.label()} does not "
                      "match its manifest: the manifest was changed after signing or damaged "
                      "in transit; fetch the bundle again, unchanged, from the release") from e
    return manifest


def check(manifest: Manifest, *, board: str, installed: Release | None, slot_size: int) -> None:
    """Refuse a verified bundle this node should not install; `installed` None (the running
    release is not known) skips the version checks."""
    release = manifest.release()
    if board not in manifest.boards:
        raise Refused("wrong_board", f"bundle {release.version} is for "
                      f"{', '.join(manifest.boards)}; this node is a {board}: send the bundle "
                      f"built for {board}")
    if installed is not None and release.key < installed.key and not manifest.downgrade:
        raise Refused("older", f"bundle {release.label()} is older than the installed "
                      f"{installed.label()}; sign it with downgrade: true to install it anyway")
    if installed is not None and release.key == installed.key:
        raise Refused("same_version", f"bundle {release.label()} is the release this node "
                      "runs; nothing to install (a rebuild needs a newer build)")
    if manifest.image_size > slot_size:
        raise Refused("too_big", f"bundle {release.version} holds a {_size(manifest.image_size)}"
                      f" image; the slot holds {_size(slot_size)}: build a smaller image, or "
                      "reflash the node with the current partition layout")


def inspect(path: Path) -> Manifest:
    """The manifest of the bundle at `path`, unverified, for a person to look at; Refused
    when it is not a whole bundle."""
    with path.open("rb") as f:
        head = read_head(f)
    expected = head.length + head.manifest.index_size + head.manifest.payload_size
    size = path.stat().st_size
    if size < expected:
        raise _truncated(size, f"its payload ({expected} bytes expected)")
    return head.manifest


def read_exactly(stream: Reader, size: int) -> bytes:
    """`size` bytes from `stream`, fewer only at its end."""
    parts, got = [], 0
    while got < size:
        part = stream.read(size - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def _exactly(stream: Reader, size: int, offset: int, what: str) -> bytes:
    data = read_exactly(stream, size)
    if len(data) < size:
        raise _truncated(offset + len(data), what)
    return data


def _truncated(at: int, what: str) -> Refused:
    return Refused("truncated", f"the bundle ends after {at} bytes, in {what}: the download "
                   "was cut short or the file is incomplete; fetch it again")


def _created() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = dt.datetime.fromtimestamp(int(epoch), dt.UTC) if epoch else dt.datetime.now(dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _size(size: int) -> str:
    return f"{size / 2**20:.1f} MiB ({size} bytes)"
