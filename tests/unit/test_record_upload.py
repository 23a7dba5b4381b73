"""Clip upload against a real HTTP server on 127.0.0.1: a plain object store, a resumable one
(the GCS convention) and one that knows no resume, each able to fail on cue."""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from edge.record.upload import UploadError, upload

SIZE = 3 << 20
CHUNK = 256 << 10
CUT = 1_234_567  # bytes a dropped first attempt delivers: not on a chunk boundary


class Store(ThreadingHTTPServer):
    """An object store keeping each PUT body by path. `faults` are played on the next PUTs
    that carry bytes: "drop N" hangs up after reading N bytes, "mute" keeps the whole body and
    hangs up without answering, an HTTP status answers with it."""

    def __init__(self, resumable: bool, faults: list[int | str]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.resumable, self.faults = resumable, faults
        self.objects: dict[str, bytes] = {}
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def url(self, path: str = "/clips/c1.mp4") -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}?X-Amz-Signature=s3cr3t"


class _Handler(BaseHTTPRequestHandler):
    server: Store

    def do_PUT(self) -> None:
        store, key = self.server, urlsplit(self.path).path
        length, crange = int(self.headers["Content-Length"]), self.headers["Content-Range"]
        with store.lock:
            store.requests.append({"length": length, "range": crange})
            fault = store.faults.pop(0) if store.faults and length else None
            held = store.objects.get(key, b"")
        if crange and not store.resumable:  # RFC 9110: refuse a partial PUT we cannot apply
            self.rfile.read(length)
            return self._answer(400, b"Content-Range is not supported")
        if crange and crange.startswith("bytes */"):  # how much do you have?
            if len(held) == int(crange.rpartition("/")[2]):
                return self._answer(200)
            return self._answer(308, range_=f"bytes=0-{len(held) - 1}" if held else None)
        start = int(crange.split()[1].partition("-")[0]) if crange else 0
        if crange and start != len(held):  # a resume from the wrong offset fails the upload
            self.rfile.read(length)
            return self._answer(400, f"resume at {start}, holding {len(held)}".encode())
        kept = held[:start] if store.resumable else b""
        if isinstance(fault, str) and fault.startswith("drop"):
            body = self.rfile.read(int(fault.split()[1]))
            store.objects[key] = kept + body if store.resumable else b""
            self.close_connection = True
            return
        body = self.rfile.read(length)
        if isinstance(fault, int):
            code = "SignatureDoesNotMatch" if fault == 403 else "SlowDown"
            return self._answer(fault, f"<Error><Code>{code}</Code></Error>".encode())
        store.objects[key] = kept + body
        if fault == "mute":
            self.close_connection = True
            return
        total = int(crange.rpartition("/")[2]) if crange else len(body)
        self._answer(201 if len(kept + body) == total else 308)

    def _answer(self, status: int, body: bytes = b"", range_: str | None = None) -> None:
        self.send_response(status)
        if range_:
            self.send_header("Range", range_)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def start_store() -> Iterator[Callable[..., Store]]:
    stores: list[Store] = []

    def start(*, resumable: bool = False, faults: tuple[int | str, ...] = ()) -> Store:
        store = Store(resumable, list(faults))
        threading.Thread(target=store.serve_forever, args=(0.01,), daemon=True).start()
        stores.append(store)
        return store

    yield start
    for store in stores:
        store.shutdown()
        store.server_close()


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "clip.mp4"
    path.write_bytes(random.Random(7).randbytes(SIZE))
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def no_wait(_s: float) -> None:
    pass


def test_a_clip_goes_up_in_one_put_with_its_hash(
    start_store: Callable[..., Store], clip: Path
) -> None:
    store = start_store()
    result = upload(clip, store.url(), chunk_bytes=CHUNK, sleep=no_wait)
    assert store.objects["/clips/c1.mp4"] == clip.read_bytes()
    assert store.requests == [{"length": SIZE, "range": None}]
    assert (result.status, result.attempts, result.resumed_from, result.bytes) == (201, 1, 0, SIZE)
    assert result.sha256 == sha256(clip)
    assert result.url == store.url().partition("?")[0]  # the signature stays out of logs


@pytest.mark.parametrize("delivered", [CUT, 0])
def test_a_link_drop_mid_clip_resumes_where_the_server_stopped(
    start_store: Callable[..., Store], clip: Path, delivered: int
) -> None:
    store = start_store(resumable=True, faults=(f"drop {delivered}",))
    waits: list[float] = []
    result = upload(clip, store.url(), chunk_bytes=CHUNK, sleep=waits.append, resumable=True)
    assert store.objects["/clips/c1.mp4"] == clip.read_bytes()
    assert (result.attempts, result.resumed_from, len(waits)) == (2, delivered, 1)
    assert result.sha256 == sha256(clip)
    query, rest = store.requests[1:]
    assert query == {"length": 0, "range": f"bytes */{SIZE}"}
    assert rest == {"length": SIZE - delivered, "range": f"bytes {delivered}-{SIZE - 1}/{SIZE}"}


def test_a_lost_answer_after_the_whole_clip_arrived_is_not_sent_again(
    start_store: Callable[..., Store], clip: Path
) -> None:
    store = start_store(resumable=True, faults=("mute",))
    result = upload(clip, store.url(), chunk_bytes=CHUNK, sleep=no_wait, resumable=True)
    assert (result.status, result.attempts, result.resumed_from) == (200, 2, SIZE)
    assert result.sha256 == sha256(clip)
    assert [r["length"] for r in store.requests] == [SIZE, 0]
    assert store.objects["/clips/c1.mp4"] == clip.read_bytes()


def test_a_store_without_resume_gets_the_whole_clip_again(
    start_store: Callable[..., Store], clip: Path
) -> None:
    store = start_store(faults=(f"drop {CUT}",))
    result = upload(clip, store.url(), chunk_bytes=CHUNK, sleep=no_wait, resumable=True)
    assert store.objects["/clips/c1.mp4"] == clip.read_bytes()
    assert (result.attempts, result.resumed_from, result.status) == (2, 0, 201)
    assert result.sha256 == sha256(clip)
    assert store.requests[1:] == [
        {"length": 0, "range": f"bytes */{SIZE}"},  # refused with 400: no resume here
        {"length": SIZE, "range": None},
    ]


def test_without_resumable_a_failed_upload_starts_again_and_never_asks(
    start_store: Callable[..., Store], clip: Path
) -> None:
    # Some stores ignore Content-Range and would keep an empty query as the object.
    store = start_store(resumable=True, faults=(f"drop {CUT}",))
    result = upload(clip, store.url(), chunk_bytes=CHUNK, sleep=no_wait)
    assert store.objects["/clips/c1.mp4"] == clip.read_bytes()
    assert (result.attempts, result.resumed_from) == (2, 0)
    assert [r["range"] for r in store.requests] == [None, None]


def test_a_busy_store_is_tried_again_after_a_backoff_wait(
    start_store: Callable[..., Store], clip: Path
) -> None:
    store = start_store(faults=(503,))
    waits: list[float] = []
    result = upload(clip, store.url(), chunk_bytes=CHUNK, sleep=waits.append)
    assert (result.attempts, result.status, len(waits)) == (2, 201, 1)
    assert store.objects["/clips/c1.mp4"] == clip.read_bytes()
    assert result.sha256 == sha256(clip)


def test_a_store_busy_on_every_attempt_fails_naming_the_last_cause(
    start_store: Callable[..., Store], clip: Path
) -> None:
    store = start_store(faults=(503, 503, 503))
    waits: list[float] = []
    with pytest.raises(UploadError, match="after 3 attempts; last: HTTP 503") as err:
        upload(clip, store.url(), attempts=3, chunk_bytes=CHUNK, sleep=waits.append)
    assert len(waits) == 2
    assert "s3cr3t" not in str(err.value)


def test_a_refused_clip_fails_at_once_with_the_server_s_words(
    start_store: Callable[..., Store], clip: Path
) -> None:
    store = start_store(faults=(403,))
    with pytest.raises(UploadError) as err:
        upload(clip, store.url(), chunk_bytes=CHUNK, sleep=no_wait)
    message = str(err.value)
    assert "HTTP 403 Forbidden" in message and "SignatureDoesNotMatch" in message
    assert store.url().partition("?")[0] in message and "s3cr3t" not in message
    assert len(store.requests) == 1  # no retry, no resume query


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/clips/c1.mp4", "clips/c1.mp4"])
def test_a_url_that_is_not_http_is_refused_before_any_request(
    start_store: Callable[..., Store], clip: Path, url: str
) -> None:
    store = start_store()
    with pytest.raises(UploadError, match="only http:// and https://"):
        upload(clip, url, sleep=no_wait)
    assert store.requests == []


def test_a_missing_clip_is_refused_before_any_request(
    start_store: Callable[..., Store], tmp_path: Path
) -> None:
    store = start_store()
    with pytest.raises(UploadError, match="cannot read the clip"):
        upload(tmp_path / "gone.mp4", store.url(), sleep=no_wait)
    assert store.requests == []
