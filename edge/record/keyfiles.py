"""Whether this node already made its evidence key, read with the standard library alone.

`edge.record.signing` makes, loads and uses the key with cryptography. The node's main
process only has to name the key at start (its fingerprint, for the crew enrolling it at
the hub); reading that from the files here spares the main process loading cryptography
(about 10 MB) at every start. The files are the plain PEM that `signing` writes: PKCS#8
for the private key, SubjectPublicKeyInfo for the public one (RFC 8410); their names and
the fingerprint are `contract.evidence.keyfiles`'.
"""

from __future__ import annotations

import base64
import binascii
import logging
from pathlib import Path

from contract.evidence.keyfiles import KEY_FILE, PUBLIC_FILE, fingerprint_of

# The DER of an Ed25519 key in each form is these bytes and then the key's 32 bytes.
_PKCS8_ED25519 = bytes.fromhex("302e020100300506032b657004220420")
_SPKI_ED25519 = bytes.fromhex("302a300506032b6570032100")

log = logging.getLogger(__name__)


def announce_key(identity_dir: Path) -> None:
    """At the node's start: log the evidence key's fingerprint, making the key the first
    time (so its public half can be enrolled before any clip). Never raises."""
    known = key_on_file(identity_dir)  # every later start: no cryptography here
    if known is None:
        from contract.evidence.keys import EvidenceKeyError, fingerprint
        from edge.record.signing import evidence_key

        try:
            known = fingerprint(evidence_key(identity_dir))
        except (EvidenceKeyError, OSError) as e:
            log.error("evidence key unavailable (clips cannot be signed): %s", e)
            return
    log.info("evidence key %s in %s", known, identity_dir)


def key_on_file(identity_dir: Path) -> str | None:
    """The fingerprint of the evidence key already made in `identity_dir`; None if there is
    none yet or its files are not what `signing` writes (then `signing.evidence_key` makes
    the key, or says what is wrong with it)."""
    try:
        private = _pem_der(identity_dir / KEY_FILE, "PRIVATE KEY")
        public = _pem_der(identity_dir / PUBLIC_FILE, "PUBLIC KEY")
    except (OSError, ValueError):
        return None
    if not (_is(private, _PKCS8_ED25519) and _is(public, _SPKI_ED25519)):
        return None
    return fingerprint_of(public[len(_SPKI_ED25519):])


def _is(der: bytes, prefix: bytes) -> bool:
    return len(der) == len(prefix) + 32 and der.startswith(prefix)


def _pem_der(path: Path, label: str) -> bytes:
    lines = path.read_text(encoding="ascii").strip().splitlines()
    if len(lines) < 3 or (lines[0], lines[-1]) != (f"-----BEGIN {label}-----",
                                                   f"-----END {label}-----"):
        raise ValueError(f"{path} is not a PEM {label.lower()}")
    try:
        return base64.b64decode("".join(lines[1:-1]), validate=True)
    except binascii.Error as e:
        raise ValueError(f"{path}: {e}") from None
