"""Evidence manifests, the node's side: build and sign the manifest of an exported clip, and
write it next to the clip.

The format, and the check anyone runs against it, are `contract.evidence.manifest`'s.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contract.evidence.hashing import utc_iso
from contract.evidence.keys import fingerprint
from contract.evidence.manifest import FORMAT, VERSION, ManifestError, canonical, link, window
from drivers.storage import write_whole
from edge.record.clips import Clip


def build_manifest(clip: Clip, *, node_id: str, key: Ed25519PrivateKey, clock_synced: bool,
                   created: float, clock_source: str = "none",
                   clock_offset_s: float | None = None) -> dict[str, Any]:
    """The signed manifest of an exported clip; the clock fields are `edge.clock.SyncState`'s
    (what vouched for the node's time, and GPS time minus it where a receiver reported one)."""
    chain = bytes(32)
    segments = []
    for part in clip.parts:
        s = part.segment
        chain = link(chain, s.sha256, part.sha256)
        segments.append({
            "path": s.path, **window(s.start, s.end, exact=True), "bytes": s.bytes,
            "sha256": s.sha256, "chain": chain.hex(),
            "in_clip": {"first": part.first, "packets": part.packets, "sha256": part.sha256},
        })
    manifest: dict[str, Any] = {
        "format": FORMAT, "version": VERSION,
        "node": node_id, "camera": clip.camera,
        "requested": window(*clip.requested), "covered": window(clip.start, clip.end),
        "gaps": [window(a, b) for a, b in clip.gaps],
        # The node's clock was stepped by step_s just before that segment (NTP or GPS setting
        # it); its times are by the new clock, those before it by the old one.
        "clock_steps": [{"segment": path, "step_s": step} for path, step in clip.clock_steps],
        "clip": {"file": clip.path.name, "bytes": clip.bytes, "sha256": clip.sha256,
                 "packets": sum(p.packets for p in clip.parts)},
        "clock_synced": clock_synced, "clock_source": clock_source,
        "clock_offset_s": clock_offset_s,
        "created": utc_iso(created), "created_unix": round(created, 6),
        "key_fingerprint": fingerprint(key.public_key()), "signature_algorithm": "Ed25519",
        "segments": segments, "chain": chain.hex(),
    }
    manifest["signature"] = base64.b64encode(key.sign(canonical(manifest))).decode("ascii")
    return manifest


def write_manifest(manifest: dict[str, Any], path: Path) -> None:
    """Write the manifest (sorted keys, UTF-8), whole or not at all."""
    text = json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    try:
        write_whole(path, text.encode("utf-8"))
    except OSError as e:
        raise ManifestError(f"cannot write the manifest {path}: {e.strerror or e}") from e
