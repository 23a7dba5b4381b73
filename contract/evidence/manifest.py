"""Evidence manifests: what a clip shows, which recorded segments its video came from, signed.

The manifest travels with the clip (`<clip>.manifest.json`) and lets anyone holding the
node's public key check, without the node, that the clip is the footage it recorded:

* `signature`: Ed25519 over the canonical JSON of every other field (sorted keys, no spaces,
  UTF-8; `canonical()`), so no field can be changed unnoticed;
* per segment: its file's size and SHA-256 as indexed when it was recorded, and
  `in_clip` = the range of the clip's video packets that came from it and their hash
  (SHA-256 over each packet in demux order: big-endian int64 pts, int64 dts, then its bytes),
  so a change to the video names the segment it hit;
* `chain`: per segment sha256(previous chain + segment hash + in-clip hash), from 32 zero
  bytes, so segments cannot be dropped, added or reordered;
* `clip`: the MP4 file's size and SHA-256 (catches changes outside the video packets).

Times are given twice, ISO 8601 UTC for people and unix seconds for programs. The node builds
and signs manifests (edge.record.manifest); `verify` here is the check anyone runs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from contract.evidence.hashing import ClipError, file_sha256, part_hashes, utc_iso
from contract.evidence.keys import fingerprint

FORMAT = "safecity-evidence-manifest"
VERSION = 1
MANIFEST_SUFFIX = ".manifest.json"


class ManifestError(RuntimeError):
    """A manifest file cannot be read or written."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of checking a clip: `problem` says what is wrong, for a person."""

    ok: bool
    problem: str = ""
    bad_segment: str | None = None  # the segment (relative path) the problem was found in


def manifest_path(clip_path: Path) -> Path:
    """Where a clip's manifest lives: next to it, `street-….mp4` → `street-….manifest.json`."""
    return clip_path.with_suffix(MANIFEST_SUFFIX)


def canonical(manifest: dict[str, Any]) -> bytes:
    """The bytes the signature covers: every field but `signature`, as compact sorted JSON."""
    body = {k: v for k, v in manifest.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as e:
        raise ManifestError(f"cannot read the manifest {path}: {e.strerror or e}") from e
    except (UnicodeDecodeError, ValueError) as e:
        raise ManifestError(f"{path} is not a manifest (not JSON: {e})") from e
    if not isinstance(data, dict):
        raise ManifestError(f"{path} is not a manifest (not a JSON object)")
    return data


def verify(clip_path: Path, manifest: dict[str, Any], public_key: Ed25519PublicKey, *,
           segments_root: Path | None = None) -> Verdict:
    """Check a clip against its manifest: signature, each segment's video, chain, file; and,
    given the recordings folder, the original segment files. The first problem found wins."""
    problem = _check_signature(manifest, public_key)
    if problem:
        return Verdict(False, problem)
    try:
        return _check_content(clip_path, manifest, segments_root)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        return Verdict(False, f"the manifest is signed but incomplete or malformed ({e!r})")


def span(start: float, end: float) -> str:
    """A time span as a person reads it: 14:59:14–14:59:24 UTC."""
    a, b = (datetime.fromtimestamp(t, UTC) for t in (start, end))
    head = f"{a:%Y-%m-%d} " if a.date() != b.date() else ""
    return f"{head}{a:%H:%M:%S}–{b:%H:%M:%S} UTC"


def link(prev: bytes, segment_sha256: str, part_sha256: str) -> bytes:
    """The hash chain's next link: sha256(previous link + segment hash + in-clip hash)."""
    return hashlib.sha256(prev + bytes.fromhex(segment_sha256)
                          + bytes.fromhex(part_sha256)).digest()


def window(start: float, end: float, *, exact: bool = False) -> dict[str, Any]:
    """A time window as the manifest gives it: ISO 8601 UTC and unix seconds (rounded to the
    microsecond unless `exact`)."""
    if not exact:
        start, end = round(start, 6), round(end, 6)
    return {"start": utc_iso(start), "end": utc_iso(end), "start_unix": start, "end_unix": end}


# --- internals ---


def _check_signature(manifest: dict[str, Any], public_key: Ed25519PublicKey) -> str:
    try:
        signature = base64.b64decode(manifest["signature"], validate=True)
    except (KeyError, TypeError, ValueError, binascii.Error):
        return "the manifest carries no valid signature"
    try:
        public_key.verify(signature, canonical(manifest))
    except InvalidSignature:
        named, given = manifest.get("key_fingerprint"), fingerprint(public_key)
        if named != given:
            return (f"the manifest is not signed by this key (it names key {named}, the key "
                    f"given is {given}), or it was altered")
        return "the manifest was altered after the node signed it (its signature does not match)"
    except (TypeError, ValueError) as e:
        return f"the manifest cannot be checked ({e})"
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        return (f"unknown manifest format {manifest.get('format')!r} version "
                f"{manifest.get('version')!r}; this tool reads {FORMAT} version {VERSION}")
    return ""


def _check_content(clip_path: Path, manifest: dict[str, Any],
                   segments_root: Path | None) -> Verdict:
    parts: list[dict[str, Any]] = manifest["segments"]
    ranges = [(int(p["in_clip"]["first"]), int(p["in_clip"]["packets"])) for p in parts]
    try:
        hashes, total = part_hashes(clip_path, ranges)
    except ClipError as e:
        return Verdict(False, f"the clip cannot be checked: {e}")
    for part, digest in zip(parts, hashes, strict=True):
        if digest != part["in_clip"]["sha256"]:
            return Verdict(False, f"segment {part['path']} ({_span(part)}) does not match: "
                           "the clip's video from it was altered", part["path"])
    expected = sum(n for _, n in ranges)
    if total != expected:
        return Verdict(False, f"the clip holds {total} video packets where the node exported "
                       f"{expected}: video was added to it")
    chain = bytes(32)
    for part in parts:
        chain = link(chain, part["sha256"], part["in_clip"]["sha256"])
        if chain.hex() != part["chain"]:
            return Verdict(False, f"the manifest's hash chain breaks at segment {part['path']}",
                           part["path"])
    if chain.hex() != manifest["chain"]:
        return Verdict(False, "the manifest's final hash chain does not match its segments")
    size, sha256 = file_sha256(clip_path)
    if (size, sha256) != (manifest["clip"]["bytes"], manifest["clip"]["sha256"]):
        return Verdict(False, "the clip's video packets match, but the MP4 container around "
                       "them was changed (its file hash differs from the one the node signed)")
    if segments_root is not None:
        return _check_originals(segments_root, parts)
    return Verdict(True)


def _check_originals(root: Path, parts: list[dict[str, Any]]) -> Verdict:
    for part in parts:
        path = root / part["path"]
        try:
            size, sha256 = file_sha256(path)
        except OSError as e:
            return Verdict(False, f"original segment {path} cannot be read "
                           f"({e.strerror or e}): evicted, moved or not this node's "
                           "recordings", part["path"])
        if (size, sha256) != (part["bytes"], part["sha256"]):
            return Verdict(False, f"original segment {part['path']} ({_span(part)}) differs "
                           "from what the node recorded: the file was altered or damaged",
                           part["path"])
    return Verdict(True)


def _span(part: dict[str, Any]) -> str:
    return span(float(part["start_unix"]), float(part["end_unix"]))
