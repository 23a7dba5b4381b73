"""Installing a bundle into a slot (firmware.install) from a file and over HTTP(S)
(firmware.http): the slot is a real file the size of a root partition, full of the old
system's bytes; the release server is a real HTTP server on 127.0.0.1 that drops, stalls,
ignores Range or fails on cue."""

from __future__ import annotations

import random
import ssl
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drivers.backoff import Backoff
from edge import pki
from firmware import bundle, keys
from firmware.bundle import Refused
from firmware.http import DownloadError, HttpStream
from firmware.install import install
from firmware.manifest import Manifest
from tests.firmware.test_bundle import (
    BOARD,
    CHUNK,
    IMAGE_SIZE,
    INSTALLED,
    MiB,
    make_bundle,
    write_image,
)

SLOT = 8 * MiB


def download(url: str, *, timeout_s: float = 5.0, retries: int = 8,
             ca_file: Path | None = None) -> HttpStream:
    """An HttpStream that waits milliseconds, not seconds, between attempts."""
    return HttpStream(url, ca_file=ca_file, timeout_s=timeout_s, retries=retries,
                      backoff=Backoff(0.001, 0.01))


@pytest.fixture
def image(tmp_path: Path) -> bytes:
    return write_image(tmp_path / "rootfs.img")


@pytest.fixture
def slot(tmp_path: Path) -> Path:
    """The inactive root partition, still holding the previous system (here: noise)."""
    path = tmp_path / "vda3"
    path.write_bytes(random.Random(7).randbytes(SLOT))
    return path


@pytest.fixture
def release_bundle(image: bytes, key: Ed25519PrivateKey, tmp_path: Path) -> Path:
    return make_bundle(tmp_path / "rootfs.img", tmp_path / "0.3.0.scfw", key)


def install_file(path: Path, slot: Path, trusted: list[Any], **kwargs: Any) -> Manifest:
    with path.open("rb") as f:
        return install(f, slot, keys=trusted, board=BOARD, installed=INSTALLED, **kwargs)


def test_an_installed_slot_holds_the_image_byte_for_byte_over_the_old_system(
        image: bytes, release_bundle: Path, slot: Path, trusted: list[Any]) -> None:
    old = slot.read_bytes()
    manifest = install_file(release_bundle, slot, trusted)
    after = slot.read_bytes()
    assert manifest.version == "0.3.0"
    assert after[:IMAGE_SIZE] == image  # the zero chunks too, over the old bytes
    assert after[IMAGE_SIZE:] == old[IMAGE_SIZE:]
    assert len(after) == SLOT


def test_progress_reports_each_chunk_up_to_the_image_size(
        release_bundle: Path, slot: Path, trusted: list[Any]) -> None:
    seen: list[tuple[int, int]] = []
    install_file(release_bundle, slot, trusted, progress=lambda done, total:
                 seen.append((done, total)))
    assert seen == [(min((n + 1) * CHUNK, IMAGE_SIZE), IMAGE_SIZE) for n in range(6)]


def _unsigned(tmp: Path, key: Ed25519PrivateKey) -> tuple[Path, dict[str, Any]]:
    return make_bundle(tmp / "rootfs.img", tmp / "b.scfw", None), {}


def _relabelled(tmp: Path, key: Ed25519PrivateKey) -> tuple[Path, dict[str, Any]]:
    path = make_bundle(tmp / "rootfs.img", tmp / "b.scfw", key)
    path.write_bytes(path.read_bytes().replace(b'"pi3"', b'"pi5"', 1))
    return path, {"board": "pi5"}


def _stranger(tmp: Path, key: Ed25519PrivateKey) -> tuple[Path, dict[str, Any]]:
    stranger = keys.generate(tmp / "elsewhere" / "stranger.pem")
    return make_bundle(tmp / "rootfs.img", tmp / "b.scfw", stranger), {}


def _signed(**changes: Any) -> Callable[[Path, Ed25519PrivateKey], tuple[Path, dict[str, Any]]]:
    """A signed bundle with `changes` to make()'s arguments, or to the node's (board, slot)."""
    node = {name: value for name, value in changes.items() if name in ("board", "slot_size")}
    made = {name: value for name, value in changes.items() if name not in node}

    def build(tmp: Path, key: Ed25519PrivateKey) -> tuple[Path, dict[str, Any]]:
        return make_bundle(tmp / "rootfs.img", tmp / "b.scfw", key, **made), node
    return build


def _not_a_bundle(tmp: Path, key: Ed25519PrivateKey) -> tuple[Path, dict[str, Any]]:
    return tmp / "rootfs.img", {}


def _cut_head(tmp: Path, key: Ed25519PrivateKey) -> tuple[Path, dict[str, Any]]:
    path = make_bundle(tmp / "rootfs.img", tmp / "b.scfw", key)
    path.write_bytes(path.read_bytes()[:500])
    return path, {}


@pytest.mark.parametrize(("reason", "bundle_for"), [
    ("not_a_bundle", _not_a_bundle),
    ("truncated", _cut_head),
    ("unsigned", _unsigned),
    ("bad_signature", _relabelled),
    ("untrusted_key", _stranger),
    ("wrong_board", _signed(board="qemu")),
    ("older", _signed(version="0.1.0")),
    ("same_version", _signed(version="0.2.0", build=INSTALLED.build)),
    ("too_big", _signed(slot_size=4 * MiB)),
])
def test_every_refusal_before_the_payload_leaves_the_slot_untouched(
        reason: str, bundle_for: Callable[[Path, Ed25519PrivateKey], tuple[Path, dict[str, Any]]],
        image: bytes, key: Ed25519PrivateKey, slot: Path, trusted: list[Any],
        tmp_path: Path) -> None:
    old = slot.read_bytes()
    path, node = bundle_for(tmp_path, key)
    with path.open("rb") as f, pytest.raises(Refused) as caught:
        install(f, slot, keys=trusted, **{"board": BOARD, "installed": INSTALLED, **node})
    assert caught.value.reason == reason
    assert slot.read_bytes() == old


def test_an_older_release_signed_with_downgrade_installs(
        image: bytes, key: Ed25519PrivateKey, slot: Path, trusted: list[Any],
        tmp_path: Path) -> None:
    path = make_bundle(tmp_path / "rootfs.img", tmp_path / "0.1.0.scfw", key, version="0.1.0",
                       downgrade=True)
    assert install_file(path, slot, trusted).version == "0.1.0"
    assert slot.read_bytes()[:IMAGE_SIZE] == image


@pytest.mark.parametrize(("stored", "chunk"), [(1, 3), (3, 6)])
def test_a_tampered_chunk_is_refused_and_the_slot_keeps_its_first_bytes(
        stored: int, chunk: int, release_bundle: Path, slot: Path, trusted: list[Any]) -> None:
    old = slot.read_bytes()
    length = bundle.inspect(release_bundle).chunk_size
    data = bytearray(release_bundle.read_bytes())
    with release_bundle.open("rb") as f:
        at = bundle.read_head(f).length + stored * length + 1000  # in the stored-th stored chunk
    data[at] ^= 0x01
    release_bundle.write_bytes(data)
    with pytest.raises(Refused) as caught:
        install_file(release_bundle, slot, trusted)
    assert caught.value.reason == "tampered"
    assert str(caught.value).startswith(f"chunk {chunk} of 6 does not match its SHA-256")
    assert slot.read_bytes()[:CHUNK] == old[:CHUNK]


def test_a_bundle_cut_short_in_its_payload_is_refused_and_the_slot_keeps_its_first_bytes(
        release_bundle: Path, slot: Path, trusted: list[Any]) -> None:
    old = slot.read_bytes()
    release_bundle.write_bytes(release_bundle.read_bytes()[:-10])
    with pytest.raises(Refused) as caught:
        install_file(release_bundle, slot, trusted)
    assert caught.value.reason == "truncated"
    assert "chunk 6 of 6" in str(caught.value) and "10 bytes short" in str(caught.value)
    assert slot.read_bytes()[:CHUNK] == old[:CHUNK]


class ReleaseServer(ThreadingHTTPServer):
    """Serves files by path. `faults` are played on the next GETs, one each: ("drop", n)
    hangs up after n bytes of body, ("stall", n) goes silent after n bytes, ("status", code)
    answers with that status. With `ranges` False it ignores Range and answers 200."""

    def __init__(self, files: dict[str, bytes], faults: list[tuple[str, int]],
                 ranges: bool = True) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files, self.faults, self.ranges = files, faults, ranges
        self.seen: list[str | None] = []  # the Range header of each GET
        self.lock, self.release = threading.Lock(), threading.Event()
        self.scheme = "http"

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server_address[1]}{path}?token=s3cr3t"


class _Handler(BaseHTTPRequestHandler):
    server: ReleaseServer

    def do_GET(self) -> None:
        server, path = self.server, self.path.partition("?")[0]
        with server.lock:
            server.seen.append(self.headers["Range"])
            fault = server.faults.pop(0) if server.faults else ("", 0)
        if fault[0] == "status" or path not in server.files:
            self.send_error(fault[1] if fault[0] == "status" else 404)
            return
        body, start = server.files[path], 0
        asked = self.headers["Range"]
        if asked and server.ranges:
            start = int(asked.removeprefix("bytes=").removesuffix("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        end = start + fault[1] if fault[0] in ("drop", "stall") else len(body)
        self.wfile.write(body[start:end])
        self.wfile.flush()
        if fault[0] == "stall":
            server.release.wait(10)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def serve(release_bundle: Path) -> Iterator[Callable[..., ReleaseServer]]:
    servers: list[ReleaseServer] = []

    def start(faults: list[tuple[str, int]] = [], ranges: bool = True,  # noqa: B006
              tls: ssl.SSLContext | None = None) -> ReleaseServer:
        server = ReleaseServer({"/0.3.0.scfw": release_bundle.read_bytes()}, list(faults),
                               ranges)
        if tls is not None:
            server.socket = tls.wrap_socket(server.socket, server_side=True)
            server.scheme = "https"
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.release.set()
        server.shutdown()
        server.server_close()


def test_a_download_dropped_several_times_resumes_and_installs(
        image: bytes, serve: Callable[..., ReleaseServer], slot: Path,
        trusted: list[Any]) -> None:
    server = serve([("drop", 300_000), ("drop", 1_500_000), ("drop", 7)])
    with download(server.url("/0.3.0.scfw")) as stream:
        install(stream, slot, keys=trusted, board=BOARD, installed=INSTALLED)
        assert stream.resumed == 3
        assert stream.received == stream.total
    assert slot.read_bytes()[:IMAGE_SIZE] == image
    assert server.seen == [None, "bytes=300000-", "bytes=1800000-", "bytes=1800007-"]


def test_a_stalled_download_times_out_and_resumes(
        image: bytes, serve: Callable[..., ReleaseServer], slot: Path,
        trusted: list[Any]) -> None:
    server = serve([("stall", 2_000_000)])
    with download(server.url("/0.3.0.scfw"), timeout_s=0.5) as stream:
        install(stream, slot, keys=trusted, board=BOARD, installed=INSTALLED)
        assert stream.resumed == 1
    assert slot.read_bytes()[:IMAGE_SIZE] == image


def test_a_server_that_ignores_range_still_delivers_the_whole_bundle(
        image: bytes, serve: Callable[..., ReleaseServer], slot: Path,
        trusted: list[Any]) -> None:
    server = serve([("drop", 1_234_567), ("drop", 2_500_000)], ranges=False)
    with download(server.url("/0.3.0.scfw")) as stream:
        install(stream, slot, keys=trusted, board=BOARD, installed=INSTALLED)
        assert stream.resumed == 2
    assert slot.read_bytes()[:IMAGE_SIZE] == image


def test_a_missing_bundle_is_a_download_error_naming_the_status_not_the_token(
        serve: Callable[..., ReleaseServer]) -> None:
    server = serve()
    with pytest.raises(DownloadError) as caught:
        download(server.url("/0.4.0.scfw"))
    assert caught.value.status == 404
    assert "HTTP 404" in str(caught.value) and "/0.4.0.scfw" in str(caught.value)
    assert "s3cr3t" not in str(caught.value)
    assert server.seen == [None]


def test_a_server_that_keeps_failing_is_given_up_after_the_retries(
        serve: Callable[..., ReleaseServer]) -> None:
    server = serve([("status", 503)] * 10)
    with pytest.raises(DownloadError) as caught:
        download(server.url("/0.3.0.scfw"), retries=3)
    assert caught.value.status == 503
    assert "after 4 attempts" in str(caught.value) and "HTTP 503" in str(caught.value)
    assert len(server.seen) == 4


def test_a_bundle_over_https_installs_with_the_hub_ca(
        image: bytes, serve: Callable[..., ReleaseServer], slot: Path, trusted: list[Any],
        tmp_path: Path) -> None:
    ca = pki.make_ca(tmp_path / "ca")
    cert = pki.issue(ca, "releases", tmp_path / "server", server_names=["127.0.0.1"])
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert.cert, cert.key)
    server = serve([("drop", 1_000_000)], tls=tls)
    with download(server.url("/0.3.0.scfw"), ca_file=ca.cert) as stream:
        install(stream, slot, keys=trusted, board=BOARD, installed=INSTALLED)
    assert slot.read_bytes()[:IMAGE_SIZE] == image
    with pytest.raises(DownloadError, match="certificate is not trusted"):  # at once, no retries
        download(server.url("/0.3.0.scfw"))
