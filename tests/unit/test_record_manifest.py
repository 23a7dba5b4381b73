"""Evidence manifests on real clips with real keys: a clip verifies as exported, and one
flipped byte anywhere (in the video of any segment, in the MP4 around it, in the manifest, in
an original segment) fails, naming the segment where there is one to name."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import stat
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contract.evidence.keyfiles import KEY_FILE, PUBLIC_FILE
from contract.evidence.keys import EvidenceKeyError, fingerprint, load_public
from contract.evidence.manifest import canonical, manifest_path, read_manifest, verify
from edge.record.clips import Clip, export_clip
from edge.record.index import SegmentIndex
from edge.record.manifest import build_manifest, write_manifest
from edge.record.signing import evidence_key
from tests.support.recording_footage import CAMERA, T0, recorded

CREATED = T0 + 120


@pytest.fixture
def index(tmp_path: Path) -> Iterator[SegmentIndex]:
    index = recorded(tmp_path / "recordings", seconds=24, segment_s=4)
    yield index
    index.close()


@pytest.fixture
def key(tmp_path: Path) -> Ed25519PrivateKey:
    return evidence_key(tmp_path / "identity")


@pytest.fixture
def clip(index: SegmentIndex, tmp_path: Path) -> Clip:
    return export_clip(index, CAMERA, T0 + 5, T0 + 19, tmp_path / "clip.mp4")  # 4 segments


def sign(clip: Clip, key: Ed25519PrivateKey) -> dict[str, Any]:
    return build_manifest(clip, node_id="pole-0042", key=key, clock_synced=True,
                          created=CREATED)


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x20
    path.write_bytes(bytes(data))


def packet_offset(clip: Clip, number: int) -> int:
    """Where the clip's packet `number` (demux order) lies in the file, found by its bytes."""
    with av.open(str(clip.path)) as container:
        payload = [bytes(p) for p in container.demux(video=0) if p.size][number]
    at = clip.path.read_bytes().find(payload)
    assert at > 0
    return at + len(payload) // 2


def box(path: Path, *names: str) -> tuple[int, int]:
    """(offset, size) of the box at `names` (e.g. "moov", "mvhd") in an MP4."""
    data, start, end = path.read_bytes(), 0, None
    for name in names:
        at = start
        limit = end if end is not None else len(data)
        while at < limit:
            size, kind = struct.unpack(">I4s", data[at:at + 8])
            if kind.decode("ascii") == name:
                start, end = at + 8, at + size
                break
            at += size
        else:
            raise AssertionError(f"no {name} box")
    assert end is not None
    return start - 8, end - start + 8


def test_a_clip_verifies_against_the_manifest_the_node_signed(
        clip: Clip, key: Ed25519PrivateKey, index: SegmentIndex, tmp_path: Path) -> None:
    manifest = sign(clip, key)
    path = manifest_path(clip.path)
    write_manifest(manifest, path)

    assert path.name == "clip.manifest.json"
    read = read_manifest(path)
    assert read == manifest
    verdict = verify(clip.path, read, key.public_key(), segments_root=index.root)
    assert verdict.ok and verdict.problem == "" and verdict.bad_segment is None
    assert read["requested"]["start"] == "2026-11-21T14:59:15.000Z"
    assert read["covered"]["start_unix"] == T0 + 4
    assert read["key_fingerprint"] == fingerprint(key.public_key())
    assert [s["path"] for s in read["segments"]] == [p.segment.path for p in clip.parts]


def test_the_packet_hashes_and_the_chain_follow_the_documented_form(
        clip: Clip, key: Ed25519PrivateKey) -> None:
    manifest = sign(clip, key)
    with av.open(str(clip.path)) as container:
        found = [struct.pack(">qq", p.pts, p.dts) + bytes(p)
                 for p in container.demux(video=0) if p.size]
    chain = bytes(32)
    for part, entry in zip(clip.parts, manifest["segments"], strict=True):
        digest = hashlib.sha256(b"".join(found[part.first:part.first + part.packets]))
        assert entry["in_clip"]["sha256"] == part.sha256 == digest.hexdigest()
        assert entry["sha256"] == part.segment.sha256
        chain = hashlib.sha256(chain + bytes.fromhex(entry["sha256"]) + digest.digest()).digest()
        assert entry["chain"] == chain.hex()
    assert manifest["chain"] == chain.hex()
    key.public_key().verify(base64.b64decode(manifest["signature"]), canonical(manifest))


@pytest.mark.parametrize("part", [0, 1, 3])
def test_a_flipped_byte_in_a_segments_video_names_that_segment(
        clip: Clip, key: Ed25519PrivateKey, part: int) -> None:
    manifest = sign(clip, key)
    hit = clip.parts[part]
    flip(clip.path, packet_offset(clip, hit.first + hit.packets // 2))

    verdict = verify(clip.path, manifest, key.public_key())

    assert not verdict.ok
    assert verdict.bad_segment == hit.segment.path
    assert f"segment {hit.segment.path} (" in verdict.problem
    assert "was altered" in verdict.problem


def test_a_flipped_byte_in_the_mp4_header_fails(clip: Clip, key: Ed25519PrivateKey) -> None:
    manifest = sign(clip, key)
    at, _ = box(clip.path, "moov", "mvhd")
    flip(clip.path, at + 12)  # the movie's creation time: no video packet changes

    verdict = verify(clip.path, manifest, key.public_key())

    assert not verdict.ok and verdict.bad_segment is None
    assert "container" in verdict.problem


def test_a_flipped_byte_in_the_sample_sizes_fails(clip: Clip, key: Ed25519PrivateKey) -> None:
    manifest = sign(clip, key)
    at, size = box(clip.path, "moov", "trak", "mdia", "minf", "stbl", "stsz")
    flip(clip.path, at + size - 2)  # the last sample's size

    verdict = verify(clip.path, manifest, key.public_key())

    assert not verdict.ok


def test_the_clock_state_a_gps_receiver_gave_is_signed_with_the_clip(
        clip: Clip, key: Ed25519PrivateKey) -> None:
    manifest = build_manifest(clip, node_id="pole-0042", key=key, clock_synced=True,
                              clock_source="gps", clock_offset_s=-0.21, created=CREATED)
    assert verify(clip.path, manifest, key.public_key()).ok
    assert (manifest["clock_source"], manifest["clock_offset_s"]) == ("gps", -0.21)
    moved = {**manifest, "clock_offset_s": 3600.0}  # someone "corrects" the node's time
    verdict = verify(clip.path, moved, key.public_key())
    assert not verdict.ok and "signature" in verdict.problem


@pytest.mark.parametrize("change", ["a time", "a segment hash", "a packet hash", "the node"])
def test_a_changed_manifest_fails_its_signature(
        clip: Clip, key: Ed25519PrivateKey, tmp_path: Path, change: str) -> None:
    path = tmp_path / "clip.manifest.json"
    write_manifest(sign(clip, key), path)
    text = path.read_text()
    manifest = json.loads(text)
    old = {"a time": str(manifest["covered"]["start_unix"]),
           "a segment hash": manifest["segments"][1]["sha256"],
           "a packet hash": manifest["segments"][2]["in_clip"]["sha256"],
           "the node": "pole-0042"}[change]
    at = text.index(old) + len(old) - 3  # a digit of it
    new = "0" if text[at] != "0" else "1"  # one character of the file changed
    path.write_text(text[:at] + new + text[at + 1:])

    verdict = verify(clip.path, read_manifest(path), key.public_key())

    assert not verdict.ok
    assert "altered" in verdict.problem and "signature" in verdict.problem


def test_another_key_fails_and_says_so(clip: Clip, key: Ed25519PrivateKey) -> None:
    other = Ed25519PrivateKey.generate()

    verdict = verify(clip.path, sign(clip, key), other.public_key())

    assert not verdict.ok
    assert "not signed by this key" in verdict.problem
    assert fingerprint(other.public_key()) in verdict.problem


def test_a_changed_original_segment_is_named(
        clip: Clip, key: Ed25519PrivateKey, index: SegmentIndex) -> None:
    manifest = sign(clip, key)
    hit = clip.parts[2].segment
    flip(index.file(hit), hit.bytes // 2)

    verdict = verify(clip.path, manifest, key.public_key(), segments_root=index.root)

    assert not verdict.ok and verdict.bad_segment == hit.path
    assert f"original segment {hit.path}" in verdict.problem
    assert verify(clip.path, manifest, key.public_key()).ok  # the clip itself is intact


def test_a_clip_that_is_not_video_at_all_fails_with_that_reason(
        clip: Clip, key: Ed25519PrivateKey) -> None:
    manifest = sign(clip, key)
    clip.path.write_bytes(b"not an mp4 " * 100)

    verdict = verify(clip.path, manifest, key.public_key())

    assert not verdict.ok and "cannot be read as video" in verdict.problem


def test_a_manifest_without_a_signature_fails(clip: Clip, key: Ed25519PrivateKey) -> None:
    manifest = copy.deepcopy(sign(clip, key))
    del manifest["signature"]

    assert verify(clip.path, manifest, key.public_key()).problem == (
        "the manifest carries no valid signature")


def test_the_evidence_key_is_made_once_private_to_the_node(tmp_path: Path) -> None:
    identity = tmp_path / "data" / "identity"
    key = evidence_key(identity)

    assert stat.S_IMODE(os.stat(identity).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(identity / KEY_FILE).st_mode) == 0o600
    assert evidence_key(identity).private_bytes_raw() == key.private_bytes_raw()
    public = load_public(identity / PUBLIC_FILE)
    assert public.public_bytes_raw() == key.public_key().public_bytes_raw()
    assert len(fingerprint(public)) == 19 and fingerprint(public).count("-") == 3
    assert sorted(p.name for p in identity.iterdir()) == [KEY_FILE, PUBLIC_FILE]


def test_a_wrong_key_file_is_refused_with_what_to_give(tmp_path: Path) -> None:
    evidence_key(tmp_path)
    with pytest.raises(EvidenceKeyError, match="is a private key; give the node's public key"):
        load_public(tmp_path / KEY_FILE)
    (tmp_path / "junk.pem").write_text("hello\n")
    with pytest.raises(EvidenceKeyError, match=r"junk\.pem is not a PEM public key"):
        load_public(tmp_path / "junk.pem")
    with pytest.raises(EvidenceKeyError, match="cannot read the public key"):
        load_public(tmp_path / "missing.pem")
