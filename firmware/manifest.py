"""The manifest of a firmware bundle: which release it carries, for which boards, and how
its slot image is cut into chunks. The SHA-256 of every chunk is in the bundle's chunk index
(firmware.chunks), which follows the signature; the manifest carries the index's SHA-256, so
the signature covers every chunk. The manifest is signed as the exact bytes of
`canonical()` and those bytes travel in the bundle, so a node verifies what was signed
before it parses anything it trusts."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from firmware.release import Release

# One ext4 block: a file that grows by a block moves the files after it by whole blocks, and
# a chunk this size still finds them in the running slot (bench/update.py measures others).
CHUNK_SIZE = 4 << 10
MIN_CHUNK, MAX_CHUNK = 4 << 10, 16 << 20  # chunk 0 must hold the superblock
_HEX64 = r"^[0-9a-f]{64}$"

Compression = Literal["none", "zlib"]


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal[2] = Field(description="A bundle of another format is refused, not guessed "
                               "at (format 1 had no chunk index and 4 MiB chunks)")
    version: str = Field(pattern=r"^\d+(\.\d+){0,3}$")
    build: int = Field(ge=0, description="Seconds since the epoch of the release's commit")
    commit: str = Field(default="", pattern=r"^[0-9A-Za-z._-]{0,64}$",
                        description="Short git id, '-dirty' when built from local changes")
    boards: list[str] = Field(min_length=1)
    image_size: int = Field(ge=1, description="Bytes of the slot image")
    chunk_size: int = CHUNK_SIZE
    compression: Compression = Field(
        default="zlib", description="How a stored chunk may be packed; each chunk is stored "
        "packed only when that makes it smaller, and its index entry says which")
    index_size: int = Field(ge=0, description="Bytes of the chunk index as stored (zlib)")
    index_sha256: str = Field(pattern=_HEX64, description="Of the index as stored")
    payload_size: int = Field(ge=0, description="Bytes of the stored (non-zero) chunks")
    image_sha256: str = Field(pattern=_HEX64, description="Of the whole slot image, to name "
                              "it; the node checks each chunk against the index instead")
    downgrade: bool = Field(default=False,
                            description="Signed permission to install over a newer release")
    created: str = Field(pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
    key_id: str = Field(default="", pattern=r"^([0-9a-f]{16})?$")

    @field_validator("chunk_size")
    @classmethod
    def _power_of_two(cls, size: int) -> int:
        if size & (size - 1) or not MIN_CHUNK <= size <= MAX_CHUNK:
            raise ValueError(f"must be a power of two from {MIN_CHUNK} to {MAX_CHUNK}")
        return size

    @field_validator("boards")
    @classmethod
    def _named(cls, boards: list[str]) -> list[str]:
        if not all(boards):
            raise ValueError("a board name is empty")
        return boards

    @property
    def chunk_count(self) -> int:
        return math.ceil(self.image_size / self.chunk_size)

    def length(self, index: int) -> int:
        """Bytes of chunk `index`: chunk_size, except a short last one."""
        return min(self.chunk_size, self.image_size - index * self.chunk_size)

    def release(self) -> Release:
        return Release(self.version, self.build, self.commit, tuple(self.boards))

    def label(self) -> str:
        return self.release().label()

    def canonical(self) -> bytes:
        """The bytes that are signed and carried in the bundle."""
        return self.model_dump_json().encode()
