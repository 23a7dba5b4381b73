"""Firmware bundles for the firmware tests: a small real slot image of six chunks (data,
holes, zeros, a short last chunk) and the signed bundle of release 0.3.0 made from it."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware import bundle
from firmware.release import Release

MiB = 1 << 20
CHUNK = MiB
SHORT = 123_457  # the last chunk's bytes: not a power of two
IMAGE_SIZE = 5 * CHUNK + SHORT
ZERO_CHUNKS = [False, True, False, True, False, False]
BOARD = "pi4"
INSTALLED = Release("0.2.0", 1763730000, "1234abc", ("pi4",))
NEW: dict[str, Any] = {"version": "0.3.0", "build": 1763800000, "commit": "89abcde",
                       "boards": ["pi4", "pi3"]}
CREATED = "2025-11-22T10:00:00Z"


def write_image(path: Path, seed: int = 1) -> bytes:
    """A slot image of six chunks: data with an ext4 superblock magic, a hole, data, zeros
    written out, half data, and a short last chunk of data; returns its bytes."""
    rng = random.Random(seed)
    data = [rng.randbytes(CHUNK), bytes(CHUNK), rng.randbytes(CHUNK), bytes(CHUNK),
            rng.randbytes(CHUNK // 2) + bytes(CHUNK // 2), rng.randbytes(SHORT)]
    data[0] = data[0][:1080] + b"\x53\xef" + data[0][1082:]  # s_magic at 1024 + 56
    with path.open("wb") as f:
        for index, chunk in enumerate(data):
            if index != 1:  # chunk 1 stays a hole, as mkfs leaves most of a slot image
                f.seek(index * CHUNK)
                f.write(chunk)
    return b"".join(data)


def make_bundle(image: Path, out: Path, key: Ed25519PrivateKey | None,
                **changes: Any) -> Path:
    """The bundle of release 0.3.0 for pi4 and pi3, with `changes` to make()'s arguments."""
    bundle.make(image, out, key=key, **{"chunk_size": CHUNK, "created": CREATED, **NEW,
                                        **changes})
    return out
