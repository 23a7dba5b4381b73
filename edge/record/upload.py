"""Uploading an exported evidence clip to the URL the hub hands out for it.

upload() PUTs one file (an MP4 of tens of MB) to an http(s) URL, typically a presigned
object-store URL, over the pole's flaky link. It streams the file in chunks and hashes it on
the way out. After a dropped connection, a timeout or a 5xx it asks the server how much it
already holds (the Google Cloud Storage resumable-upload convention: `Content-Range: bytes */N`,
answered by 308 and `Range: bytes=0-M`) and sends only the rest; a server that cannot resume
gets the whole file again. Results and errors name the URL without its query string, which in a
presigned URL is a credential.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit, urlunsplit

from drivers.backoff import Backoff

log = logging.getLogger(__name__)

_HEAD_BYTES = 200  # of an answer's body in an error: enough for an S3 or GCS error code and text
_OWN_HEADERS = frozenset({"content-length", "content-range", "content-type", "host",
                          "transfer-encoding"})
_HELD = re.compile(r"bytes=0-(\d+)")


class UploadError(Exception):
    """The clip is not on the server. The message says why and names the URL without its query."""


@dataclass(frozen=True)
class UploadResult:
    """A finished upload; safe to log, as `url` has no query string."""

    url: str
    bytes: int
    sha256: str  # hex, of the file as sent
    attempts: int
    resumed_from: int  # bytes the server held when the last (successful) attempt started
    status: int  # HTTP status of the final answer


def _headers(content_type: str, headers: Mapping[str, str] | None) -> dict[str, str]:
    sent = {"Content-Type": content_type}
    for name, value in (headers or {}).items():
        if name.lower() in _OWN_HEADERS:
            raise ValueError(f"header {name!r} is set by upload() itself (content_type= for type)")
        sent[name] = value
    return sent


def upload(
    path: Path,
    url: str,
    *,
    content_type: str = "application/octet-stream",
    headers: Mapping[str, str] | None = None,
    chunk_bytes: int = 1 << 20,
    timeout_s: float = 30.0,
    attempts: int = 5,
    backoff: Backoff | None = None,
    sleep: Callable[[float], None] = time.sleep,
    cafile: Path | None = None,
    resumable: bool = False,
) -> UploadResult:
    """PUT the file at `path` to `url`, resuming or restarting after link failures.

    `timeout_s` bounds each connect, send and wait for an answer, not the whole upload.
    `attempts` counts PUTs (a query for the resume offset is part of its attempt); the waits
    between them come from `backoff` (default Backoff(1.0, 30.0)) through `sleep`. Raises
    UploadError for a URL that is not http(s), an unreadable file or CA bundle (before any
    request), a 4xx other than 408/429 (at once), or when every attempt has failed.
    `resumable` only where the server is known to resume (the hub says so): some stores
    ignore Content-Range and would keep the empty query as the object; without it a failed
    upload starts again from byte 0, which every server takes.
    """
    if chunk_bytes < 1 or attempts < 1:
        raise ValueError(f"chunk_bytes and attempts must be >= 1, got {chunk_bytes}, {attempts}")
    sent_headers = _headers(content_type, headers)
    parts = urlsplit(url)
    # Userinfo is a credential too; the fragment is never sent.
    shown = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
    if parts.scheme not in ("http", "https"):
        raise UploadError(
            f"cannot upload to {shown!r}: only http:// and https:// URLs are supported"
            f" ({f'got {parts.scheme}://' if parts.scheme else 'no scheme'});"
            " check the upload URL the hub sent"
        )
    try:
        host, port = parts.hostname, parts.port
    except ValueError as e:
        raise UploadError(f"cannot upload to {shown!r}: bad port ({e})") from e
    if not host:
        raise UploadError(f"cannot upload to {shown!r}: the URL names no host")
    context = _tls_context(cafile) if parts.scheme == "https" else None
    try:
        file = path.open("rb")
    except OSError as e:
        raise UploadError(f"cannot read the clip {path}: {e.strerror or e}") from e
    backoff = backoff or Backoff(1.0, 30.0)
    with file:
        job = _Upload(path, file, host, port, parts.path or "/", parts.query, sent_headers,
                      chunk_bytes, timeout_s, context, resumable)
        cause: Exception | None = None
        for number in range(1, attempts + 1):
            if number > 1:
                sleep(backoff.next())
            try:
                result = job.attempt(number, shown)
            except (_Retry, OSError, http.client.HTTPException) as e:
                cause = e
                log.warning("upload of %s to %s: attempt %d of %d failed: %s",
                            path.name, shown, number, attempts, _say(e))
                continue
            backoff.reset()
            return result
    raise UploadError(
        f"upload of {path} to {shown} failed after {attempts} attempts; last: {_say(cause)}"
    ) from cause


class _Retry(Exception):
    """An answer worth another attempt: 5xx, 408, 429, or 308 to what should have been all."""


@dataclass(frozen=True)
class _Answer:
    status: int
    reason: str
    range: str | None
    head: bytes  # the first _HEAD_BYTES of the body

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def transient(self) -> bool:
        return self.status in (408, 429) or self.status >= 500

    def __str__(self) -> str:
        text = self.head.decode("utf-8", "replace").strip()
        return f"HTTP {self.status} {self.reason}" + (f": {text}" if text else "")


class _Digest:
    """SHA-256 of the file fed as chunks go out: each byte once and in order whatever the
    retries, so a clip sent in one pass is read once."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self.upto = 0  # bytes of the file hashed so far

    def feed(self, pos: int, chunk: bytes) -> None:
        if pos <= self.upto < pos + len(chunk):
            self._sha.update(memoryview(chunk)[self.upto - pos :])
            self.upto = pos + len(chunk)

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


class _Upload:
    """One clip on its way to one URL, across attempts: where the next PUT starts, and what
    the server has shown it can do."""

    def __init__(
        self, path: Path, file: BinaryIO, host: str, port: int | None, url_path: str,
        query: str, headers: dict[str, str], chunk_bytes: int, timeout_s: float,
        context: ssl.SSLContext | None, resumable: bool,
    ) -> None:
        self.path, self.file, self.host, self.port = path, file, host, port
        self.target = url_path + (f"?{query}" if query else "")
        self.headers, self.chunk_bytes, self.timeout_s = headers, chunk_bytes, timeout_s
        self.context = context
        self.total = os.fstat(file.fileno()).st_size
        self.digest = _Digest()
        self.start = 0  # where the next PUT's body starts
        self.ranged = False  # the next PUT carries Content-Range: the server resumes
        self.ask_first = False  # bytes may have reached the server since it last said how many
        self.can_resume = resumable  # until the server's answer to the query shows otherwise
        self.sent_all = False  # the last byte has gone out at least once

    def attempt(self, number: int, shown: str) -> UploadResult:
        if self.ask_first and self.can_resume:
            done = self._ask()
            if done is not None:
                return self._result(number, done.status, resumed_from=self.total, shown=shown)
        answer = self._put()
        if answer.ok:
            return self._result(number, answer.status, resumed_from=self.start, shown=shown)
        if answer.transient or answer.status == 308:
            raise _Retry(str(answer))
        expired = answer.status in (401, 403)
        hint = " (an expired or wrong upload URL? ask the hub for a new one)" if expired else ""
        raise UploadError(f"{shown} refused the clip {self.path.name}: {answer}{hint}")

    def _ask(self) -> _Answer | None:
        """Ask how much of the clip the server holds and set where the next PUT starts;
        the answer if the server already has all of it."""
        answer = self._request(
            {**self.headers, "Content-Length": "0", "Content-Range": f"bytes */{self.total}"},
            body=False,
        )
        if answer.transient and answer.status != 501:
            raise _Retry(f"asking how much arrived: {answer}")
        self.ask_first = False
        if answer.status == 308:
            self.start, self.ranged = _held(answer.range, self.total), True
            log.info("resuming %s at byte %d of %d", self.path.name, self.start, self.total)
            return None
        # A 2xx before the last byte ever left means the server stored the empty query itself.
        if answer.ok and self.sent_all:
            return answer
        # RFC 9110 has a server that cannot resume refuse Content-Range on a PUT (400).
        log.info("no resumable upload for %s (%s); sending it whole", self.path.name, answer)
        self.start, self.ranged, self.can_resume = 0, False, False
        return None

    def _put(self) -> _Answer:
        headers = {**self.headers, "Content-Length": str(self.total - self.start)}
        if self.ranged:
            headers["Content-Range"] = (
                f"bytes {self.start}-{self.total - 1}/{self.total}" if self.start < self.total
                else f"bytes */{self.total}"
            )
        # Only after a resume: the prefix the server holds may not all have passed the hash.
        for pos, chunk in self._chunks(self.digest.upto, self.start):
            self.digest.feed(pos, chunk)
        return self._request(headers, body=True)

    def _request(self, headers: dict[str, str], *, body: bool) -> _Answer:
        if self.context is not None:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self.host, self.port, timeout=self.timeout_s, context=self.context
            )
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        try:
            try:
                conn.connect()
            except ssl.SSLCertVerificationError as e:
                raise UploadError(
                    f"{self.host} is not trusted ({e.verify_message}); check the CA bundle"
                    " (cafile) the upload uses"
                ) from e
            self.ask_first = self.ask_first or body
            conn.putrequest("PUT", self.target)
            for name, value in headers.items():
                conn.putheader(name, value)
            conn.endheaders()
            if body:
                try:
                    for pos, chunk in self._chunks(self.start, self.total):
                        self.digest.feed(pos, chunk)
                        conn.send(chunk)
                except ConnectionError:
                    early = _early_answer(conn)
                    if early is None:
                        raise
                    return early
                self.sent_all = True
            return _answer(conn)
        finally:
            conn.close()

    def _chunks(self, start: int, end: int) -> Iterator[tuple[int, bytes]]:
        """The file's bytes [start, end) in chunk_bytes pieces; a read error is final."""
        pos = start
        try:
            self.file.seek(start)
            while pos < end:
                chunk = self.file.read(min(self.chunk_bytes, end - pos))
                if not chunk:
                    raise UploadError(f"{self.path} shrank to {pos} bytes during the upload"
                                      f" ({self.total} expected); was it rewritten?")
                yield pos, chunk
                pos += len(chunk)
        except OSError as e:
            raise UploadError(f"cannot read the clip {self.path} at byte {pos}: {e}") from e

    def _result(self, number: int, status: int, *, resumed_from: int, shown: str) -> UploadResult:
        # Complete already whenever the server has it all; this keeps the hash whole regardless.
        for pos, chunk in self._chunks(self.digest.upto, self.total):
            self.digest.feed(pos, chunk)
        return UploadResult(shown, self.total, self.digest.hexdigest(), number, resumed_from,
                            status)


def _answer(conn: http.client.HTTPConnection) -> _Answer:
    response = conn.getresponse()
    head = response.read(_HEAD_BYTES)
    return _Answer(response.status, response.reason, response.getheader("Range"), head)


def _early_answer(conn: http.client.HTTPConnection) -> _Answer | None:
    """The answer of a server that refused the upload and hung up before reading the body
    (S3 with a bad signature does), which says more than the broken pipe; None if none came."""
    try:
        answer = _answer(conn)
    except (OSError, http.client.HTTPException):
        return None
    # A success before the whole body went out cannot mean the clip arrived.
    return None if answer.ok else answer


def _held(range_header: str | None, total: int) -> int:
    """Bytes a 308 says the server holds: N+1 for `Range: bytes=0-N`, 0 without a Range."""
    match = _HELD.fullmatch(range_header.strip()) if range_header else None
    held = int(match[1]) + 1 if match else 0
    if range_header and not 0 < held <= total:
        log.warning("unusable Range %r for a %d-byte clip; resending from byte 0",
                    range_header, total)
        return 0
    return held


def _tls_context(cafile: Path | None) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=cafile)
    except OSError as e:  # ssl.SSLError is an OSError
        raise UploadError(f"cannot load the CA bundle {cafile}: {e}; check cafile") from e


def _say(cause: BaseException | None) -> str:
    return str(cause) if isinstance(cause, _Retry) else f"{type(cause).__name__}: {cause}"
