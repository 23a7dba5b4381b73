"""The signed firmware bundle (firmware.bundle, .manifest, .keys, .release): what make() writes
from a real sparse slot image, and each refusal a node makes before it writes a byte, with
real Ed25519 release keys and a fake device tree."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware import bundle, keys, release
from firmware.bundle import Refused
from firmware.chunks import BadIndex, ChunkIndex
from firmware.release import Release
from tests.support.bundles import (
    BOARD,
    CHUNK,
    IMAGE_SIZE,
    INSTALLED,
    NEW,
    SHORT,
    ZERO_CHUNKS,
    MiB,
    make_bundle,
    write_image,
)


def head_of(path: Path) -> bundle.Head:
    with path.open("rb") as f:
        return bundle.read_head(f)


def index_of(path: Path) -> ChunkIndex:
    with path.open("rb") as f:
        head = bundle.read_head(f)
        return bundle.read_index(f, head, head.manifest)


def refusal(path: Path, trusted: list[Any], *, board: str = BOARD,
            installed: Release | None = INSTALLED, slot_size: int = 8 * MiB) -> Refused:
    """What a node refuses the bundle at `path` with, before its payload."""
    with pytest.raises(Refused) as caught:
        manifest = bundle.verify(head_of(path), trusted)
        bundle.check(manifest, board=board, installed=installed, slot_size=slot_size)
    return caught.value


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "rootfs.img"
    write_image(path)
    return path


def test_a_bundle_made_twice_from_one_image_is_the_same_bytes(
        image: Path, key: Ed25519PrivateKey, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1763800000")
    first = bundle.make(image, tmp_path / "a.scfw", key=key, chunk_size=CHUNK, **NEW)
    second = bundle.make(image, tmp_path / "b.scfw", key=key, chunk_size=CHUNK, **NEW)
    assert first == second
    assert first.created == "2025-11-22T08:26:40Z"
    assert (tmp_path / "a.scfw").read_bytes() == (tmp_path / "b.scfw").read_bytes()


def test_zero_chunks_are_left_out_of_the_payload_and_others_packed_when_that_pays(
        image: Path, key: Ed25519PrivateKey, tmp_path: Path) -> None:
    path = make_bundle(image, tmp_path / "0.3.0.scfw", key)
    manifest, index = bundle.inspect(path), index_of(path)
    assert [stored == 0 for stored in index.stored] == ZERO_CHUNKS
    assert manifest.image_size == IMAGE_SIZE
    # noise does not pack and is stored as it is; the half-zero chunk packs to about half
    assert [index.stored[i] for i in (0, 2, 5)] == [CHUNK, CHUNK, SHORT]
    assert CHUNK // 2 < index.stored[4] < CHUNK * 6 // 10
    assert manifest.payload_size == sum(index.stored)
    unpacked = bundle.make(image, tmp_path / "raw.scfw", key=None, chunk_size=CHUNK,
                           compression="none", **NEW)
    assert unpacked.payload_size == 3 * CHUNK + SHORT
    assert path.stat().st_size == (head_of(path).length + manifest.index_size
                                   + manifest.payload_size)


def test_a_signed_bundle_verifies_under_the_release_key_it_names(
        image: Path, key: Ed25519PrivateKey, trusted: list[Any], tmp_path: Path) -> None:
    made = make_bundle(image, tmp_path / "0.3.0.scfw", key)
    head = head_of(made)
    assert head.manifest_bytes == head.manifest.canonical()
    assert head.manifest.key_id == keys.key_id(key.public_key())
    manifest = bundle.verify(head, trusted)
    bundle.check(manifest, board=BOARD, installed=INSTALLED, slot_size=8 * MiB)
    assert manifest.release() == Release("0.3.0", 1763800000, "89abcde", ("pi4", "pi3"))


def test_an_unsigned_bundle_is_refused(image: Path, trusted: list[Any], tmp_path: Path) -> None:
    refused = refusal(make_bundle(image, tmp_path / "unsigned.scfw", None), trusted)
    assert refused.reason == "unsigned"
    assert "0.3.0 (build 1763800000, g89abcde) is not signed" in str(refused)


def test_a_bundle_relabelled_for_another_board_fails_its_signature(
        image: Path, key: Ed25519PrivateKey, trusted: list[Any], tmp_path: Path) -> None:
    path = make_bundle(image, tmp_path / "0.3.0.scfw", key)
    data = path.read_bytes()
    head = head_of(path)
    assert data.count(b'"pi3"') == 1
    path.write_bytes(data[:head.length].replace(b'"pi3"', b'"pi5"') + data[head.length:])
    refused = refusal(path, trusted, board="pi5")
    assert refused.reason == "bad_signature"
    assert "changed after signing" in str(refused)


def test_a_bundle_signed_with_a_key_the_node_does_not_trust_is_refused(
        image: Path, trusted: list[Any], tmp_path: Path) -> None:
    stranger = keys.generate(tmp_path / "elsewhere" / "stranger.pem")
    refused = refusal(make_bundle(image, tmp_path / "0.3.0.scfw", stranger), trusted)
    assert refused.reason == "untrusted_key"
    assert keys.key_id(stranger.public_key()) in str(refused)
    assert keys.key_id(trusted[0]) in str(refused)


def test_a_bundle_for_other_boards_names_them_and_this_node(
        image: Path, key: Ed25519PrivateKey, trusted: list[Any], tmp_path: Path) -> None:
    refused = refusal(make_bundle(image, tmp_path / "0.3.0.scfw", key), trusted, board="qemu")
    assert refused.reason == "wrong_board"
    assert "bundle 0.3.0 is for pi4, pi3; this node is a qemu" in str(refused)


def test_an_older_release_is_refused_unless_signed_with_downgrade(
        image: Path, key: Ed25519PrivateKey, trusted: list[Any], tmp_path: Path) -> None:
    old = {"version": "0.1.0", "build": 1763000000}
    refused = refusal(make_bundle(image, tmp_path / "old.scfw", key, **old), trusted)
    assert refused.reason == "older"
    assert str(refused) == (
        "bundle 0.1.0 (build 1763000000, g89abcde) is older than the installed 0.2.0 "
        "(build 1763730000, g1234abc); sign it with downgrade: true to install it anyway")
    allowed = make_bundle(image, tmp_path / "old-allowed.scfw", key, downgrade=True, **old)
    manifest = bundle.verify(head_of(allowed), trusted)
    bundle.check(manifest, board=BOARD, installed=INSTALLED, slot_size=8 * MiB)


def test_the_running_release_is_refused_but_a_newer_build_of_it_is_not(
        image: Path, key: Ed25519PrivateKey, trusted: list[Any], tmp_path: Path) -> None:
    same = {"version": "0.2.0", "build": INSTALLED.build}
    refused = refusal(make_bundle(image, tmp_path / "same.scfw", key, **same), trusted)
    assert refused.reason == "same_version"
    rebuilt = make_bundle(image, tmp_path / "rebuilt.scfw", key, version="0.2.0",
                          build=INSTALLED.build + 60)
    bundle.check(bundle.verify(head_of(rebuilt), trusted), board=BOARD, installed=INSTALLED,
                 slot_size=8 * MiB)


def test_without_a_known_installed_release_any_version_may_install(
        image: Path, key: Ed25519PrivateKey, trusted: list[Any], tmp_path: Path) -> None:
    path = make_bundle(image, tmp_path / "old.scfw", key, version="0.0.1")
    bundle.check(bundle.verify(head_of(path), trusted), board=BOARD, installed=None,
                 slot_size=8 * MiB)


def test_an_image_bigger_than_the_slot_is_refused(
        image: Path, key: Ed25519PrivateKey, trusted: list[Any], tmp_path: Path) -> None:
    path = make_bundle(image, tmp_path / "0.3.0.scfw", key)
    refused = refusal(path, trusted, slot_size=4 * MiB)
    assert refused.reason == "too_big"
    assert "5.1 MiB" in str(refused) and "4.0 MiB" in str(refused)


def test_a_disk_image_given_as_a_bundle_is_refused(image: Path, trusted: list[Any]) -> None:
    with pytest.raises(Refused) as caught:
        head_of(image)
    assert caught.value.reason == "not_a_bundle"


@pytest.mark.parametrize("cut", [5, 10, 100, -1])
def test_a_bundle_cut_inside_its_head_is_refused_as_truncated(
        cut: int, image: Path, key: Ed25519PrivateKey, tmp_path: Path) -> None:
    path = make_bundle(image, tmp_path / "0.3.0.scfw", key)
    length = head_of(path).length
    path.write_bytes(path.read_bytes()[:cut if cut > 0 else length + cut])
    with pytest.raises(Refused) as caught:
        head_of(path)
    assert caught.value.reason == "truncated"
    assert "fetch it again" in str(caught.value)


def test_a_bundle_cut_inside_its_payload_is_refused_by_inspect(
        image: Path, key: Ed25519PrivateKey, tmp_path: Path) -> None:
    path = make_bundle(image, tmp_path / "0.3.0.scfw", key)
    os.truncate(path, path.stat().st_size - 1)
    with pytest.raises(Refused) as caught:
        bundle.inspect(path)
    assert caught.value.reason == "truncated"


@pytest.mark.parametrize("version", [1, 3])
def test_a_bundle_of_another_format_is_refused_as_malformed_naming_the_field(
        version: int, tmp_path: Path) -> None:
    path = tmp_path / "other.scfw"
    body = b'{"format": %d}' % version
    path.write_bytes(bundle.MAGIC + len(body).to_bytes(4, "big") + body + bytes(2))
    with pytest.raises(Refused) as caught:
        head_of(path)
    assert caught.value.reason == "malformed"
    assert "(format: Input should be 2)" in str(caught.value)


def test_a_chunk_index_altered_after_signing_is_refused_as_tampered(
        image: Path, key: Ed25519PrivateKey, trusted: list[Any], tmp_path: Path) -> None:
    path = make_bundle(image, tmp_path / "0.3.0.scfw", key)
    data = bytearray(path.read_bytes())
    data[head_of(path).length + 20] ^= 0x40
    path.write_bytes(data)
    with path.open("rb") as f, pytest.raises(Refused) as caught:
        head = bundle.read_head(f)
        bundle.read_index(f, head, bundle.verify(head, trusted))
    assert caught.value.reason == "tampered"
    assert "chunk index" in str(caught.value)


def test_a_chunk_index_that_does_not_fit_its_manifest_is_rejected() -> None:
    index = ChunkIndex(CHUNK, 3 * CHUNK - 1)
    for _ in range(3):
        index.add(b"a" * 32, CHUNK // 2)
    fits = ChunkIndex.decode(index.encode(), chunk_size=CHUNK, image_size=3 * CHUNK - 1)
    assert list(fits.stored) == [CHUNK // 2] * 3 and fits.digest(2) == b"a" * 32
    for wrong in ({"image_size": 4 * CHUNK}, {"image_size": 2 * CHUNK},
                  {"chunk_size": CHUNK // 2}):
        with pytest.raises(BadIndex):
            ChunkIndex.decode(index.encode(), **{"chunk_size": CHUNK,
                                                  "image_size": 3 * CHUNK - 1, **wrong})
    zero_claim = ChunkIndex(CHUNK, CHUNK)
    zero_claim.add(b"a" * 32, 0)  # "all zeros", with a digest that is not of zeros
    with pytest.raises(BadIndex, match="not possible"):
        ChunkIndex.decode(zero_claim.encode(), chunk_size=CHUNK, image_size=CHUNK)
    with pytest.raises(BadIndex, match="does not unpack"):
        ChunkIndex.decode(b"not zlib", chunk_size=CHUNK, image_size=CHUNK)


def test_a_new_release_key_is_private_to_its_owner_with_its_public_half_beside_it(
        tmp_path: Path) -> None:
    key = keys.generate(tmp_path / "release.pem")
    assert stat.S_IMODE((tmp_path / "release.pem").stat().st_mode) == 0o600
    assert keys.key_id(keys.load_private(tmp_path / "release.pem")) == keys.key_id(key)
    assert keys.key_id(keys.load_public(tmp_path / "release.pub")) == keys.key_id(key)
    assert len(keys.key_id(key)) == 16


def test_a_release_key_is_never_overwritten(tmp_path: Path) -> None:
    keys.generate(tmp_path / "release.pem")
    before = (tmp_path / "release.pem").read_bytes()
    with pytest.raises(keys.ReleaseKeyError, match="already exists"):
        keys.generate(tmp_path / "release.pem")
    assert (tmp_path / "release.pem").read_bytes() == before


def test_a_damaged_trusted_key_is_named(tmp_path: Path) -> None:
    keys.generate(tmp_path / "good.pem")
    (tmp_path / "bad.pub").write_text("-----BEGIN PUBLIC KEY-----\nnope\n")
    with pytest.raises(keys.ReleaseKeyError, match=r"bad\.pub"):
        keys.load_trusted(tmp_path)
    (tmp_path / "bad.pub").unlink()
    assert len(keys.load_trusted(tmp_path)) == 1


@pytest.mark.parametrize(("compatible", "board"), [
    (b"raspberrypi,4-model-b\0brcm,bcm2711\0", "pi4"),
    (b"raspberrypi,4-compute-module\0brcm,bcm2711\0", "pi4"),
    (b"raspberrypi,3-model-b-plus\0brcm,bcm2837\0", "pi3"),
    (b"raspberrypi,5-model-b\0brcm,bcm2712\0", "pi5"),
    (b"linux,dummy-virt\0", "qemu"),
    (b"pine64,rock64\0rockchip,rk3328\0", "unknown"),
    (None, "unknown"),
])
def test_the_board_comes_from_the_device_tree(compatible: bytes | None, board: str,
                                              tmp_path: Path) -> None:
    if compatible is not None:
        (tmp_path / "proc/device-tree").mkdir(parents=True)
        (tmp_path / "proc/device-tree/compatible").write_bytes(compatible)
    assert release.board(tmp_path) == board


def test_the_installed_release_is_read_back_and_a_missing_or_damaged_one_is_none(
        tmp_path: Path) -> None:
    path = tmp_path / "release.json"
    assert release.installed(path) is None
    path.write_bytes(release.to_json(INSTALLED))
    assert release.installed(path) == INSTALLED
    path.write_text('{"version": "zero"}')
    assert release.installed(path) is None


def test_versions_order_by_number_then_build() -> None:
    assert Release("0.10.0", 1).key > Release("0.9.9", 9).key
    assert Release("1.0", 1).key == Release("1.0.0", 1).key
    assert Release("1.0.0", 2).key > Release("1.0.0", 1).key
    assert INSTALLED.label() == "0.2.0 (build 1763730000, g1234abc)"
    assert Release("0.2.0", 5).label() == "0.2.0 (build 5)"
    with pytest.raises(ValueError, match=r"like 0\.1\.0"):
        Release("v1.2", 1)
