"""The node's evidence key: an Ed25519 key made on the node that signs every clip's manifest.

The private key lives in the node's identity folder (`identity_dir/evidence-ed25519.pem`,
mode 0600) and never leaves the node; its public half is written next to it
(`evidence-ed25519.pub.pem`) for the hub, which checks manifests against it. Loading,
writing and fingerprinting a public key are `contract.evidence.keys`'.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contract.evidence.keyfiles import KEY_FILE, PUBLIC_FILE
from contract.evidence.keys import EvidenceKeyError, public_pem
from drivers.storage import sync_dir, write_new, write_whole


def evidence_key(identity_dir: Path) -> Ed25519PrivateKey:
    """The node's evidence key: loaded from `identity_dir`, or made there on first use."""
    path = identity_dir / KEY_FILE
    if not path.exists():
        _create(identity_dir, path)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as e:
        raise EvidenceKeyError(f"cannot read the evidence key {path}: {e.strerror or e}") from e
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise EvidenceKeyError(f"{path} is not a PEM private key ({e}); move it away and a "
                               "new key is made (the hub must then be given the new "
                               "public key)") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise EvidenceKeyError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    public = identity_dir / PUBLIC_FILE
    if not public.exists():
        _write_public(public, key)
    return key


def _create(identity_dir: Path, path: Path) -> None:
    try:
        identity_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        tmp = identity_dir / f".{KEY_FILE}.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)  # a leftover of a crash of this same pid number
        write_new(tmp, pem, 0o600)
        try:
            # link, not rename: if another process made the key meanwhile, keep theirs
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        sync_dir(identity_dir)
    except OSError as e:
        raise EvidenceKeyError(f"cannot make the evidence key in {identity_dir}: "
                               f"{e.strerror or e}") from e


def _write_public(public: Path, key: Ed25519PrivateKey) -> None:
    try:
        write_whole(public, public_pem(key), 0o644)
    except OSError as e:
        raise EvidenceKeyError(f"cannot write the public key {public}: {e.strerror or e}") from e
