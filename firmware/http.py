"""Reading a bundle over http(s) as a stream, across a pole's flaky link.

HttpStream GETs the URL and hands out the body as it arrives. When the connection drops,
stalls past the timeout or the server answers 5xx, it waits (Backoff), asks again for the
rest with `Range: bytes=<offset>-`, and goes on; a server that ignores Range answers 200 and
the bytes already read are skipped. Errors name the URL without its query string, which in
a presigned URL is a credential.
"""

from __future__ import annotations

import http.client
import io
import re
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from drivers.backoff import Backoff

_SKIP = 1 << 20  # bytes read at once when skipping what a 200 repeats
_RANGE = re.compile(r"^bytes (\d+)-\d+/(\d+|\*)$")


class DownloadError(Exception):
    """The download cannot go on; the message names the URL (no query), status and bytes."""

    def __init__(self, message: str, *, status: int | None, received: int) -> None:
        super().__init__(message)
        self.status, self.received = status, received


class HttpStream(io.RawIOBase):
    """The body at `url`, read like a file, resumed after a dropped connection; with `start`
    and `length`, only that span of it (a Range request).

    `retries` is how many attempts in a row may fail (no byte arriving) before DownloadError;
    a 4xx other than 408 and 429 fails at once. `timeout_s` bounds each socket operation. The
    request is made on construction, so `total` (of the whole body) is known from then on when
    the server says, and `ranged` whether the server honoured the Range."""

    def __init__(self, url: str, *, ca_file: Path | None = None, timeout_s: float = 30.0,
                 retries: int = 8, backoff: Backoff | None = None,
                 sleep: Callable[[float], None] = time.sleep, start: int = 0,
                 length: int | None = None) -> None:
        super().__init__()
        parts = urlsplit(url)
        # Userinfo is a credential too; the fragment is never sent.
        self.shown = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path,
                                 "", ""))
        if parts.scheme not in ("http", "https"):
            raise DownloadError(f"cannot download {self.shown!r}: only http:// and https:// "
                                "URLs are supported", status=None, received=0)
        self.url, self.timeout_s, self.retries = url, timeout_s, retries
        self._backoff, self._sleep = backoff or Backoff(1.0, 30.0), sleep
        self._context = _tls_context(ca_file) if parts.scheme == "https" else None
        self._response: http.client.HTTPResponse | None = None
        self._offset, self._failures = start, 0
        self._end = None if length is None else start + length
        self._total: int | None = None
        self._opened = False
        self.resumed = 0  # connections made again after the first, for telemetry
        self.transferred = 0  # bytes that came over the network, skipped ones included
        self.ranged = False
        self._connect(None)

    @property
    def total(self) -> int | None:
        """Bytes of the whole body, when the server said."""
        return self._total

    @property
    def received(self) -> int:
        return self._offset

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1, /) -> bytes:
        if self.closed:
            raise ValueError(f"read from the closed download of {self.shown}")
        if size < 0:
            return self.readall()
        while size := self._room(size):
            data, cause = self._read_some(size)
            if data is not None:
                return data
            self._connect(cause)
        return b""

    def _room(self, size: int) -> int:
        """How many of `size` bytes may be read still: 0 at the end of the body or span."""
        if self._total is not None and self._offset >= self._total:
            return 0
        if self._end is not None:
            return max(0, min(size, self._end - self._offset))
        return size

    def _read_some(self, size: int) -> tuple[bytes, None] | tuple[None, BaseException | str]:
        """Up to `size` bytes of the open answer (b"" at the end of a body of unknown
        length), or why none came and the connection must be made again."""
        response = self._response
        if response is None:  # only close() clears it, and read() refuses once closed
            raise ValueError(f"read from the closed download of {self.shown}")
        try:
            data = response.read(size)
        except (OSError, http.client.HTTPException) as e:
            return None, e
        if data:
            self._offset += len(data)
            self.transferred += len(data)
            self._failures = 0
            self._backoff.reset()
            return data, None
        if self._total is None:
            return b"", None  # no length given: the end of the body is the end
        return None, f"the connection closed at byte {self._offset} of {self._total}"

    def readall(self) -> bytes:
        parts = []
        while data := self.read(_SKIP):
            parts.append(data)
        return b"".join(parts)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[:len(data)] = data
        return len(data)

    def close(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None
        super().close()

    def _connect(self, cause: BaseException | str | None) -> None:
        """(Re)open the body at the current offset, waiting between failed attempts."""
        while True:
            if cause is not None:
                self._failures += 1
                if self._failures > self.retries:
                    raise DownloadError(
                        f"download of {self.shown} failed after {self._failures} attempts in a "
                        f"row at byte {self._offset}{self._of()}; last: {_say(cause)}",
                        status=getattr(cause, "code", None), received=self._offset)
                self._sleep(self._backoff.next())
            if self._response is not None:
                self._response.close()
                self._response = None
            try:
                self._response = self._open()
            except (OSError, http.client.HTTPException) as e:
                cause = e
                continue
            self.resumed += self._opened
            self._opened = True
            return

    def _open(self) -> http.client.HTTPResponse:
        response = self._request()
        start, total = self._span(response)
        if self._total is not None and total is not None and total != self._total:
            response.close()
            raise DownloadError(f"{self.shown} changed on the server during the download: it "
                                f"was {self._total} bytes, now {total}; start again",
                                status=response.status, received=self._offset)
        self._total = total if total is not None else self._total
        self.ranged = response.status == 206
        # A 200 to a ranged request (or a 206 from before) repeats bytes already read.
        skip = self._offset - start
        if skip < 0:
            response.close()
            raise DownloadError(f"{self.shown} answered a request for bytes from "
                                f"{self._offset} with bytes from {start}; the server or a "
                                "proxy on the way is broken", status=response.status,
                                received=self._offset)
        self._skip(response, skip)
        return response

    def _request(self) -> http.client.HTTPResponse:
        """GET the body from the current offset (to the span's end); the answer, its body
        unread. Errors no retry can mend are DownloadError."""
        headers = {"Accept-Encoding": "identity"}
        if self._end is not None:
            headers["Range"] = f"bytes={self._offset}-{self._end - 1}"
        elif self._offset:
            headers["Range"] = f"bytes={self._offset}-"
        # S310: __init__ refused every scheme but http and https
        request = urllib.request.Request(self.url, headers=headers)  # noqa: S310
        try:
            response = urllib.request.urlopen(request, timeout=self.timeout_s,  # noqa: S310
                                              context=self._context)
        except urllib.error.HTTPError as e:
            e.close()
            if 400 <= e.code < 500 and e.code not in (408, 429):
                raise DownloadError(f"download of {self.shown} failed: HTTP {e.code} {e.reason}"
                                    f" at byte {self._offset}{self._of()}", status=e.code,
                                    received=self._offset) from e
            raise
        except urllib.error.URLError as e:
            if isinstance(e.reason, ssl.SSLCertVerificationError):  # no retry will change it
                raise DownloadError(f"download of {self.shown} failed: the server's certificate "
                                    f"is not trusted ({e.reason.verify_message}); check ca_file",
                                    status=None, received=self._offset) from e
            raise
        if not isinstance(response, http.client.HTTPResponse):
            # urllib follows a redirect to ftp:// too; an update comes over http(s) only
            response.close()
            raise DownloadError(f"download of {self.shown} failed: redirected to "
                                f"{urlsplit(response.geturl()).scheme}://, not http(s)",
                                status=None, received=self._offset)
        return response

    def _skip(self, response: http.client.HTTPResponse, skip: int) -> None:
        """Read and drop the first `skip` bytes of the answer: ones already read before."""
        while skip:
            data = response.read(min(skip, _SKIP))
            if not data:
                response.close()
                raise http.client.IncompleteRead(b"", skip)
            skip -= len(data)
            self.transferred += len(data)

    def _span(self, response: http.client.HTTPResponse) -> tuple[int, int | None]:
        """Where the answer's body starts in the whole, and the whole's size when known."""
        length = response.getheader("Content-Length")
        if response.status != 206:
            return 0, int(length) if length and length.isdigit() else None
        found = _RANGE.match(response.getheader("Content-Range") or "")
        if not found:
            response.close()
            raise DownloadError(f"{self.shown} answered 206 without a usable Content-Range",
                                status=206, received=self._offset)
        start = int(found[1])
        if found[2] != "*":
            return start, int(found[2])
        return start, start + int(length) if length and length.isdigit() else None

    def _of(self) -> str:
        return f" of {self._total}" if self._total is not None else ""


def _tls_context(ca_file: Path | None) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=ca_file)
    except OSError as e:  # ssl.SSLError is an OSError
        raise DownloadError(f"cannot load the CA file {ca_file}: {e}; check ca_file",
                            status=None, received=0) from e


def _say(cause: BaseException | str) -> str:
    if isinstance(cause, str):
        return cause
    if isinstance(cause, urllib.error.HTTPError):
        return f"HTTP {cause.code} {cause.reason}"
    return f"{type(cause).__name__}: {cause}"


class HttpSource:
    """A bundle on an http(s) server, read in spans with Range requests, each span resumed
    like any download (HttpStream). `transferred` counts what came over the network."""

    def __init__(self, url: str, *, ca_file: Path | None = None, timeout_s: float = 30.0,
                 retries: int = 8, backoff: Backoff | None = None) -> None:
        self.url, self.ca_file, self.timeout_s, self.retries = url, ca_file, timeout_s, retries
        self.backoff = backoff
        self.streams: list[HttpStream] = []
        self._before = 0  # bytes of the streams before the last: they are read one at a time

    def open(self, start: int, length: int | None) -> HttpStream:
        stream = HttpStream(self.url, ca_file=self.ca_file, timeout_s=self.timeout_s,
                            retries=self.retries, backoff=self.backoff, start=start,
                            length=length)
        if self.streams:
            self._before += self.streams[-1].transferred
        self.streams.append(stream)
        return stream

    @property
    def transferred(self) -> int:
        """Asked after every chunk: not a sum over every span opened so far."""
        return self._before + (self.streams[-1].transferred if self.streams else 0)
