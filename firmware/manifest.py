"""The manifest of a firmware bundle: which release it carries, for which boards, and the
SHA-256 of every chunk of the slot image and of the whole image. It is signed as the exact
bytes of `canonical()` and those bytes travel in the bundle, so a node verifies what was
signed before it parses anything it trusts."""

from __future__ import annotations

import hashlib
import math
from functools import lru_cache
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from firmware.release import Release

CHUNK_SIZE = 4 << 20
MIN_CHUNK, MAX_CHUNK = 4 << 10, 256 << 20  # chunk 0 must hold the superblock; memory holds two
_HEX64 = r"^[0-9a-f]{64}$"


class Chunk(BaseModel):
    """One chunk of the image; a `zero` chunk is all zero bytes and is not in the payload
    (the installer writes the zeros itself)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sha256: str = Field(pattern=_HEX64)
    zero: bool = False


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal[1] = Field(description="A newer tool's bundle is refused, not guessed at")
    version: str = Field(pattern=r"^\d+(\.\d+){0,3}$")
    build: int = Field(ge=0, description="Seconds since the epoch of the release's commit")
    commit: str = Field(default="", pattern=r"^[0-9A-Za-z._-]{0,64}$",
                        description="Short git id, '-dirty' when built from local changes")
    boards: list[str] = Field(min_length=1)
    image_size: int = Field(ge=1, description="Bytes of the slot image")
    chunk_size: int = CHUNK_SIZE
    chunks: list[Chunk]
    payload_size: int = Field(ge=0, description="Bytes of the stored (non-zero) chunks")
    image_sha256: str = Field(pattern=_HEX64)
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

    @model_validator(mode="after")
    def _chunks_add_up(self) -> Self:
        expected = math.ceil(self.image_size / self.chunk_size)
        if len(self.chunks) != expected:
            raise ValueError(f"{len(self.chunks)} chunks for a {self.image_size}-byte image in "
                             f"chunks of {self.chunk_size}; it takes {expected}")
        stored = sum(self.length(i) for i, chunk in enumerate(self.chunks) if not chunk.zero)
        if stored != self.payload_size:
            raise ValueError(f"payload_size is {self.payload_size} but the stored chunks "
                             f"hold {stored} bytes")
        for i, chunk in enumerate(self.chunks):
            if chunk.zero and chunk.sha256 != zero_sha256(self.length(i)):
                raise ValueError(f"chunk {i} is marked zero but its SHA-256 is not of zeros")
        return self

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


@lru_cache(maxsize=8)
def zero_sha256(length: int) -> str:
    """The SHA-256 of `length` zero bytes; there are at most two lengths per image."""
    return hashlib.sha256(bytes(length)).hexdigest()
