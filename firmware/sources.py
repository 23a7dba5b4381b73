"""Where a bundle is read from: spans of one file, local (FileSource) or over http(s)
(firmware.http.HttpSource), and Ahead, the start of a bundle read in order through such spans."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Protocol

from firmware.bundle import Reader, read_exactly

HEAD_STEP = 64 << 10  # the first ranged read: the head of any bundle fits


class Source(Protocol):
    """Where a bundle is read from: spans of one file, local or over http(s)."""

    def open(self, start: int, length: int | None) -> Reader:
        """A stream of `length` bytes from `start` (to the end when None)."""
        ...

    @property
    def transferred(self) -> int:
        """Bytes read from it so far (over the network, for a remote one)."""
        ...


class Ahead:
    """The start of a bundle read in order through ranged reads of at least HEAD_STEP bytes:
    the head and the index without the payload behind them."""

    def __init__(self, source: Source) -> None:
        self.source, self.pos = source, 0
        self.buf, self.buf_at = b"", 0

    def read(self, size: int = -1, /) -> bytes:
        end = self.pos + size
        have = self.buf_at + len(self.buf)
        if end > have:
            want = max(end - have, HEAD_STEP)
            stream = self.source.open(have, want)
            try:
                more = read_exactly(stream, want)
            finally:
                getattr(stream, "close", lambda: None)()
            self.buf = self.buf[self.pos - self.buf_at:] + more
            self.buf_at = self.pos
        out = self.buf[self.pos - self.buf_at:end - self.buf_at]
        self.pos += len(out)
        return out


class FileSource:
    """A bundle in a local file (a release engineer's, a test's, a USB stick's)."""

    def __init__(self, path: Path) -> None:
        self.path, self._read = path, 0

    def open(self, start: int, length: int | None) -> Reader:
        f = self.path.open("rb")
        f.seek(start)
        return _Counted(f, self, length)

    @property
    def transferred(self) -> int:
        return self._read


class _Counted:
    def __init__(self, f: BinaryIO, source: FileSource, length: int | None) -> None:
        self.f, self.source, self.left = f, source, length

    def read(self, size: int = -1, /) -> bytes:
        if self.left is not None:
            size = self.left if size < 0 else min(size, self.left)
        data = self.f.read(size)
        self.source._read += len(data)
        if self.left is not None:
            self.left -= len(data)
        return data

    def close(self) -> None:
        self.f.close()
