"""The evidence key's two file names and its fingerprint, with the standard library alone.

The node's main process only has to name its evidence key at start (its fingerprint, for the
crew enrolling it at the hub); doing it from here spares it loading cryptography (about
10 MB) at every start. `contract.evidence.keys` loads and fingerprints keys with cryptography.
"""

from __future__ import annotations

import hashlib

KEY_FILE = "evidence-ed25519.pem"  # the node's private key (PKCS#8 PEM, mode 0600)
PUBLIC_FILE = "evidence-ed25519.pub.pem"  # its public half (SubjectPublicKeyInfo PEM)


def fingerprint_of(raw_public: bytes) -> str:
    """What a person compares: 16 hex digits of the raw public key's SHA-256, in fours."""
    digits = hashlib.sha256(raw_public).hexdigest()[:16]
    return "-".join(digits[i:i + 4] for i in range(0, 16, 4))
