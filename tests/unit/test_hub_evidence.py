"""The hub's evidence store and its check of a delivered clip: a real HTTP server taking real
PUTs; a clip recorded, exported, signed and uploaded by the pole's own code verifies, and a
clip changed after upload, a manifest for another camera or another pole's key do not."""

from __future__ import annotations

import hashlib
import http.client
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contract.commands import ClipResult
from contract.evidence.hashing import utc_iso
from edge.record.clips import export_clip
from edge.record.manifest import build_manifest
from edge.record.signing import evidence_key
from edge.record.upload import upload
from hub.evidence import EvidenceStore, check_clip
from tests.support.recording_footage import CAMERA, T0, recorded

NODE = "pole-1"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EvidenceStore]:
    s = EvidenceStore(tmp_path / "evidence")
    s.start()
    yield s
    s.stop()


def put(store: EvidenceStore, path: str, body: bytes,
        headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    host, port = store.address
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("PUT", path, body=body, headers=headers or {})
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def test_a_put_arrives_whole_under_its_name_and_is_answered_201(store: EvidenceStore) -> None:
    body = bytes(range(256)) * 5000  # 1.28 MB: more than one read chunk
    status, _ = put(store, "/pole-1-street-call1.mp4", body)

    assert status == 201
    assert store.path("pole-1-street-call1.mp4").read_bytes() == body
    assert store.received("pole-1-street-call1.mp4") == (len(body),
                                                          hashlib.sha256(body).hexdigest())
    assert store.url("pole-1-street-call1.mp4") == (
        f"http://{store.address[0]}:{store.address[1]}/pole-1-street-call1.mp4")
    assert [p.name for p in store.folder.iterdir()] == ["pole-1-street-call1.mp4"]


def test_a_query_in_the_upload_url_is_not_part_of_the_name(store: EvidenceStore) -> None:
    assert put(store, "/clip.mp4?X-Signature=abc", b"video")[0] == 201
    assert store.path("clip.mp4").read_bytes() == b"video"


def test_a_second_upload_of_a_name_replaces_the_first(store: EvidenceStore) -> None:
    put(store, "/clip.mp4", b"first")
    assert put(store, "/clip.mp4", b"second")[0] == 201
    assert store.path("clip.mp4").read_bytes() == b"second"


@pytest.mark.parametrize("path", ["/../escape.mp4", "/a/b.mp4", "/.hidden", "/"])
def test_a_path_that_is_not_one_file_name_is_refused_and_nothing_is_written(
        store: EvidenceStore, path: str) -> None:
    status, why = put(store, path, b"x" * 10)

    assert status == 400 and b"file name" in why
    assert list(store.folder.iterdir()) == []
    assert not (store.folder.parent / "escape.mp4").exists()


def test_a_put_without_content_length_is_refused_with_411(store: EvidenceStore) -> None:
    host, port = store.address
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.putrequest("PUT", "/clip.mp4")
    conn.endheaders()
    answer = conn.getresponse()
    conn.close()

    assert answer.status == 411
    assert store.received("clip.mp4") is None


def test_a_resumable_put_is_refused_so_the_uploader_sends_the_file_whole(
        store: EvidenceStore) -> None:
    status, why = put(store, "/clip.mp4", b"", {"Content-Range": "bytes */100"})

    assert status == 400 and b"send it whole" in why
    assert not store.path("clip.mp4").exists()


def test_an_upload_that_breaks_off_leaves_nothing_behind(store: EvidenceStore) -> None:
    with socket.create_connection(store.address, timeout=10) as s:
        s.sendall(b"PUT /clip.mp4 HTTP/1.1\r\nHost: hub\r\nContent-Length: 1000\r\n\r\n"
                  + b"x" * 10)
        s.shutdown(socket.SHUT_WR)  # the link drops after 10 of 1000 bytes
        answer = s.recv(200)

    assert answer.startswith(b"HTTP/1.0 400")
    assert list(store.folder.iterdir()) == []
    assert store.received("clip.mp4") is None


def test_a_name_the_store_refuses_gets_no_url(store: EvidenceStore) -> None:
    with pytest.raises(ValueError, match="not a file name"):
        store.url("../clip.mp4")


def test_stop_is_safe_twice_and_refuses_further_uploads(tmp_path: Path) -> None:
    s = EvidenceStore(tmp_path / "evidence")
    s.start()
    address = s.address
    s.stop()
    s.stop()
    with pytest.raises(OSError):
        socket.create_connection(address, timeout=2).close()


# --- a clip delivered by the pole's own code, checked by the hub ---


@pytest.fixture
def pole_key(tmp_path: Path) -> Ed25519PrivateKey:
    return evidence_key(tmp_path / "identity")


@pytest.fixture
def delivered(tmp_path: Path, store: EvidenceStore,
              pole_key: Ed25519PrivateKey) -> tuple[Path, ClipResult]:
    """As the pole does for a `clip` command: export, sign, PUT to the store; the result as
    its `done` response carries it."""
    index = recorded(tmp_path / "recordings", seconds=20, segment_s=4)
    try:
        clip = export_clip(index, CAMERA, T0 + 5, T0 + 15, tmp_path / "clip.mp4")
    finally:
        index.close()
    manifest = build_manifest(clip, node_id=NODE, key=pole_key, clock_synced=True,
                              created=T0 + 60)
    sent = upload(clip.path, store.url("pole-1-street-call1.mp4"), content_type="video/mp4")
    result = ClipResult.model_validate({
        "bytes": clip.bytes, "sha256": clip.sha256, "start": utc_iso(clip.start),
        "end": utc_iso(clip.end), "gaps": [], "uploaded_to": sent.url, "manifest": manifest,
    })
    return store.path("pole-1-street-call1.mp4"), result


def test_a_clip_uploaded_by_the_poles_uploader_verifies_with_the_poles_key(
        store: EvidenceStore, delivered: tuple[Path, ClipResult],
        pole_key: Ed25519PrivateKey) -> None:
    path, result = delivered

    assert store.received(path.name) == (result.bytes, result.sha256)
    verdict = check_clip(path, result, pole_key.public_key(), node=NODE, camera=CAMERA)
    assert verdict.ok, verdict.problem


def test_a_clip_changed_after_upload_does_not_verify(
        delivered: tuple[Path, ClipResult], pole_key: Ed25519PrivateKey) -> None:
    path, result = delivered
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit, in the middle of the video
    path.write_bytes(bytes(data))

    verdict = check_clip(path, result, pole_key.public_key(), node=NODE, camera=CAMERA)
    assert not verdict.ok
    assert "altered" in verdict.problem or "changed" in verdict.problem


def test_a_signed_manifest_for_another_camera_is_not_evidence_for_this_request(
        delivered: tuple[Path, ClipResult], pole_key: Ed25519PrivateKey) -> None:
    path, result = delivered

    verdict = check_clip(path, result, pole_key.public_key(), node=NODE, camera="gate")
    assert not verdict.ok and "camera 'gate' as asked" in verdict.problem
    verdict = check_clip(path, result, pole_key.public_key(), node="pole-2", camera=CAMERA)
    assert not verdict.ok and "node 'pole-2'" in verdict.problem


def test_a_clip_checked_with_another_poles_key_does_not_verify(
        delivered: tuple[Path, ClipResult]) -> None:
    path, result = delivered
    other = Ed25519PrivateKey.generate().public_key()

    verdict = check_clip(path, result, other, node=NODE, camera=CAMERA)
    assert not verdict.ok and "not signed by this key" in verdict.problem


def test_a_response_whose_hash_differs_from_the_signed_one_does_not_verify(
        delivered: tuple[Path, ClipResult], pole_key: Ed25519PrivateKey) -> None:
    path, result = delivered
    forged = result.model_copy(update={"sha256": "0" * 64})

    verdict = check_clip(path, forged, pole_key.public_key(), node=NODE, camera=CAMERA)
    assert not verdict.ok and "differs from the signed manifest" in verdict.problem


def test_a_missing_upload_is_said_plainly(tmp_path: Path, delivered: tuple[Path, ClipResult],
                                          pole_key: Ed25519PrivateKey) -> None:
    _, result = delivered
    verdict = check_clip(tmp_path / "nothing.mp4", result, pole_key.public_key(), node=NODE,
                         camera=CAMERA)
    assert not verdict.ok and "did not arrive" in verdict.problem
