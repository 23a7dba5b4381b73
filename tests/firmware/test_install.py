"""Installing a bundle into a slot (firmware.install) from a file and over HTTP(S)
(firmware.http): the slot is a real file the size of a root partition, full of the old
system's bytes; the release server is a real HTTP server on 127.0.0.1 that drops, stalls,
ignores Range or fails on cue."""

from __future__ import annotations

import hashlib
import random
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drivers.backoff import Backoff
from firmware import bundle, keys
from firmware.bundle import Refused
from firmware.chunks import SlotIndex
from firmware.http import DownloadError, HttpSource, HttpStream
from firmware.install import Running, Tally, install
from firmware.manifest import Manifest
from firmware.sources import FileSource
from provisioning import pki
from tests.support.bundles import BOARD, CHUNK, IMAGE_SIZE, INSTALLED, MiB, make_bundle, write_image
from tests.support.release_server import ReleaseServer

SLOT = 8 * MiB


def download(url: str, *, timeout_s: float = 5.0, retries: int = 8,
             ca_file: Path | None = None) -> HttpStream:
    """An HttpStream that waits milliseconds, not seconds, between attempts."""
    return HttpStream(url, ca_file=ca_file, timeout_s=timeout_s, retries=retries,
                      backoff=Backoff(0.001, 0.01))


def remote(url: str, *, timeout_s: float = 5.0, ca_file: Path | None = None) -> HttpSource:
    """The bundle at `url` as the installer reads it, waiting milliseconds between attempts."""
    return HttpSource(url, ca_file=ca_file, timeout_s=timeout_s, backoff=Backoff(0.001, 0.01))


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
    return install(FileSource(path), slot, keys=trusted, board=BOARD, installed=INSTALLED,
                   **kwargs).manifest


def test_an_installed_slot_holds_the_image_byte_for_byte_over_the_old_system(
        image: bytes, release_bundle: Path, slot: Path, trusted: list[Any]) -> None:
    old = slot.read_bytes()
    manifest = install_file(release_bundle, slot, trusted)
    after = slot.read_bytes()
    assert manifest.version == "0.3.0"
    assert after[:IMAGE_SIZE] == image  # the zero chunks too, over the old bytes
    assert after[IMAGE_SIZE:] == old[IMAGE_SIZE:]
    assert len(after) == SLOT


def test_progress_reports_the_zeros_then_each_chunk_up_to_the_image_size(
        release_bundle: Path, slot: Path, trusted: list[Any]) -> None:
    seen: list[Tally] = []
    install_file(release_bundle, slot, trusted, progress=lambda t: seen.append(Tally(**vars(t))))
    assert [t.done for t in seen][:6] == [CHUNK, 2 * CHUNK, 3 * CHUNK, 4 * CHUNK, 5 * CHUNK,
                                          IMAGE_SIZE]
    assert {t.total for t in seen} == {IMAGE_SIZE}
    last = seen[-1]
    assert (last.zeroed, last.reused) == (2 * CHUNK, 0)
    assert last.downloaded == release_bundle.stat().st_size  # read once, start to end


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
    with pytest.raises(Refused) as caught:
        install(FileSource(path), slot, keys=trusted,
                **{"board": BOARD, "installed": INSTALLED, **node})
    assert caught.value.reason == reason
    assert slot.read_bytes() == old


def test_an_older_release_signed_with_downgrade_installs(
        image: bytes, key: Ed25519PrivateKey, slot: Path, trusted: list[Any],
        tmp_path: Path) -> None:
    path = make_bundle(tmp_path / "rootfs.img", tmp_path / "0.1.0.scfw", key, version="0.1.0",
                       downgrade=True)
    assert install_file(path, slot, trusted).version == "0.1.0"
    assert slot.read_bytes()[:IMAGE_SIZE] == image


@pytest.mark.parametrize("chunk", [2, 4, 5])  # 4 is stored packed
def test_a_tampered_chunk_is_refused_and_the_slot_holds_no_superblock(
        chunk: int, release_bundle: Path, slot: Path, trusted: list[Any]) -> None:
    with release_bundle.open("rb") as f:
        head = bundle.read_head(f)
        index = bundle.read_index(f, head, head.manifest)
    data = bytearray(release_bundle.read_bytes())
    data[head.length + head.manifest.index_size + index.offsets()[chunk] + 1000] ^= 0x01
    release_bundle.write_bytes(data)
    with pytest.raises(Refused) as caught:
        install_file(release_bundle, slot, trusted)
    assert caught.value.reason == "tampered"
    assert str(caught.value).startswith(f"chunk {chunk + 1} of 6 does not match its SHA-256")
    assert slot.read_bytes()[:CHUNK] == bytes(CHUNK)  # cleared first, written last


def test_a_bundle_cut_short_in_its_payload_is_refused_and_the_slot_holds_no_superblock(
        release_bundle: Path, slot: Path, trusted: list[Any]) -> None:
    release_bundle.write_bytes(release_bundle.read_bytes()[:-10])
    with pytest.raises(Refused) as caught:
        install_file(release_bundle, slot, trusted)
    assert caught.value.reason == "truncated"
    assert "chunk 6 of 6" in str(caught.value) and "10 bytes short" in str(caught.value)
    assert slot.read_bytes()[:CHUNK] == bytes(CHUNK)


def test_zero_chunks_become_holes_in_a_slot_file(
        image: bytes, release_bundle: Path, slot: Path, trusted: list[Any]) -> None:
    before = slot.stat().st_blocks
    install_file(release_bundle, slot, trusted)
    assert slot.read_bytes()[:IMAGE_SIZE] == image
    assert slot.stat().st_blocks * 512 <= before * 512 - 2 * CHUNK  # chunks 1 and 3 punched


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
    source = remote(server.url("/0.3.0.scfw"))
    install(source, slot, keys=trusted, board=BOARD, installed=INSTALLED)
    [stream] = source.streams
    assert stream.resumed == 3
    assert stream.received == stream.total
    assert slot.read_bytes()[:IMAGE_SIZE] == image
    assert server.seen == [None, "bytes=300000-", "bytes=1800000-", "bytes=1800007-"]


def test_a_stalled_download_times_out_and_resumes(
        image: bytes, serve: Callable[..., ReleaseServer], slot: Path,
        trusted: list[Any]) -> None:
    server = serve([("stall", 2_000_000)])
    source = remote(server.url("/0.3.0.scfw"), timeout_s=0.5)
    install(source, slot, keys=trusted, board=BOARD, installed=INSTALLED)
    assert [stream.resumed for stream in source.streams] == [1]
    assert slot.read_bytes()[:IMAGE_SIZE] == image


def test_a_server_that_ignores_range_still_delivers_the_whole_bundle(
        image: bytes, serve: Callable[..., ReleaseServer], slot: Path,
        trusted: list[Any]) -> None:
    server = serve([("drop", 1_234_567), ("drop", 2_500_000)], ranges=False)
    source = remote(server.url("/0.3.0.scfw"))
    install(source, slot, keys=trusted, board=BOARD, installed=INSTALLED)
    assert [stream.resumed for stream in source.streams] == [2]
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
    install(remote(server.url("/0.3.0.scfw"), ca_file=ca.cert), slot, keys=trusted,
            board=BOARD, installed=INSTALLED)
    assert slot.read_bytes()[:IMAGE_SIZE] == image
    with pytest.raises(DownloadError, match="certificate is not trusted"):  # at once, no retries
        download(server.url("/0.3.0.scfw"))


# --- adaptive installs: only what the running slot lacks is fetched ---

BLOCK = 4096


def releases(tmp: Path) -> tuple[Path, Path, bytes]:
    """The running release's slot and the next release's image, 4 KiB blocks as ext4 lays
    them out: the next one changes block 10, grows a file at block 100 by one block (the 100
    blocks after it move up by one), and ends in zeros as a slot image does."""
    rng = random.Random(3)
    blocks = [rng.randbytes(BLOCK) for _ in range(300)] + [bytes(BLOCK)] * 60
    old = b"".join(blocks)
    new_blocks = [*blocks[:300]]
    new_blocks[10] = rng.randbytes(BLOCK)
    new_blocks[100:200] = [rng.randbytes(BLOCK), *blocks[100:199]]
    new = b"".join(new_blocks) + bytes(60 * BLOCK)
    running = tmp / "vda2"
    running.write_bytes(old + rng.randbytes(200 * BLOCK))  # the slot beyond the image: noise
    image = tmp / "next.img"
    image.write_bytes(new)
    return running, image, new


def scanned(device: Path) -> Running:
    return Running(device, lambda size: SlotIndex.scan(device, label="0.2.0", chunk_size=size))


def test_an_adaptive_install_fetches_only_the_blocks_the_running_slot_lacks(
        key: Ed25519PrivateKey, slot: Path, trusted: list[Any],
        serve: Callable[..., ReleaseServer], tmp_path: Path) -> None:
    running, image, new = releases(tmp_path)
    path = make_bundle(image, tmp_path / "next.scfw", key, chunk_size=BLOCK)
    server = serve()
    server.files["/next.scfw"] = path.read_bytes()
    source = remote(server.url("/next.scfw"))
    done = install(source, slot, keys=trusted, board=BOARD, installed=INSTALLED,
                   running=scanned(running))
    assert slot.read_bytes()[:len(new)] == new
    # block 10 and the grown file's new block are fetched; the 99 moved ones are found
    assert done.tally.reused == (300 - 2) * BLOCK
    assert done.tally.zeroed == 60 * BLOCK
    with path.open("rb") as f:
        head = bundle.read_head(f)
    payload_at = head.length + head.manifest.index_size
    assert payload_at + 2 * BLOCK <= done.tally.downloaded < payload_at + 2 * BLOCK + (64 << 10)
    assert done.tally.downloaded < path.stat().st_size // 10
    ranges = [r for r in server.seen if r is not None]
    assert len(ranges) == len(server.seen) == 3  # head and index (small here), two spans
    assert all(r.count("-") == 1 and not r.endswith("-") for r in ranges)  # bounded ranges


def test_a_running_slot_whose_kept_index_is_stale_still_installs_the_exact_image(
        key: Ed25519PrivateKey, slot: Path, trusted: list[Any], tmp_path: Path) -> None:
    running, image, new = releases(tmp_path)
    path = make_bundle(image, tmp_path / "next.scfw", key, chunk_size=BLOCK)
    # an index that claims the running slot already holds the whole next image
    stale = SlotIndex.scan(image, label="0.2.0", chunk_size=BLOCK)
    done = install(FileSource(path), slot, keys=trusted, board=BOARD, installed=INSTALLED,
                   running=Running(running, lambda _size: stale))
    assert slot.read_bytes()[:len(new)] == new
    # every copy was hashed: what did not match was fetched instead
    assert done.tally.reused < (300 - 2) * BLOCK
    assert done.tally.done == len(new)


def test_an_adaptive_install_from_a_server_that_ignores_range_still_installs(
        key: Ed25519PrivateKey, slot: Path, trusted: list[Any],
        serve: Callable[..., ReleaseServer], tmp_path: Path) -> None:
    running, image, new = releases(tmp_path)
    path = make_bundle(image, tmp_path / "next.scfw", key, chunk_size=BLOCK)
    server = serve(ranges=False)
    server.files["/next.scfw"] = path.read_bytes()
    done = install(remote(server.url("/next.scfw")), slot, keys=trusted, board=BOARD,
                   installed=INSTALLED, running=scanned(running))
    assert slot.read_bytes()[:len(new)] == new
    # the head, then one pass through the file for both spans, not one pass per span
    assert done.tally.downloaded <= 2 * path.stat().st_size


def test_a_slot_index_is_kept_whole_and_a_damaged_one_reads_as_missing(tmp_path: Path) -> None:
    running, _image, _new = releases(tmp_path)
    made = SlotIndex.scan(running, label="0.2.0 (build 1)", chunk_size=BLOCK)
    made.save(tmp_path / "slot-A.index")
    assert SlotIndex.load(tmp_path / "slot-A.index") == made
    data = (tmp_path / "slot-A.index").read_bytes()
    (tmp_path / "slot-A.index").write_bytes(data[:-5])
    assert SlotIndex.load(tmp_path / "slot-A.index") is None
    assert SlotIndex.load(tmp_path / "missing.index") is None


@pytest.mark.parametrize("chunk", [BLOCK, 2 * MiB])  # smaller and larger than one read
def test_a_slot_index_has_one_digest_per_chunk_whatever_the_chunk_size(
        chunk: int, tmp_path: Path) -> None:
    data = random.Random(5).randbytes(5 * MiB)
    (tmp_path / "slot").write_bytes(data)
    made = SlotIndex.scan(tmp_path / "slot", label="x", chunk_size=chunk)
    assert made.size == 5 * MiB - (5 * MiB) % chunk
    assert made.digests == b"".join(hashlib.sha256(data[at:at + chunk]).digest()
                                    for at in range(0, made.size, chunk))
