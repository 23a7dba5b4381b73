"""The node's evidence key: an Ed25519 key made on the node that signs every clip's manifest.

The private key lives in the node's identity folder (`identity_dir/evidence-ed25519.pem`,
mode 0600) and never leaves the node; its public half is written next to it
(`evidence-ed25519.pub.pem`) for the hub, which checks manifests against it. A person
compares keys by their fingerprint: the first 16 hex digits of the SHA-256 of the raw
public key, in groups of four (``3f2a-91c0-5be7-d41e``).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge.durable import sync_dir
from edge.record.keyfiles import KEY_FILE as KEY_FILE  # the file names, as ever importable here
from edge.record.keyfiles import PUBLIC_FILE as PUBLIC_FILE
from edge.record.keyfiles import fingerprint_of


class EvidenceKeyError(RuntimeError):
    """A key file cannot be read or made; the message names the file and what to do."""


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


def public_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """The public key as PEM (SubjectPublicKeyInfo), as the hub stores it."""
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def fingerprint(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """What a person compares: 16 hex digits of the raw public key's SHA-256, in fours."""
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    return fingerprint_of(key.public_bytes(serialization.Encoding.Raw,
                                           serialization.PublicFormat.Raw))


def load_public(path: Path) -> Ed25519PublicKey:
    """A node's public evidence key from a PEM file (its `evidence-ed25519.pub.pem`)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise EvidenceKeyError(f"cannot read the public key {path}: {e.strerror or e}") from e
    if b"PRIVATE KEY" in data:
        raise EvidenceKeyError(f"{path} is a private key; give the node's public key "
                               f"({PUBLIC_FILE}, or `edge-clip key` on the node)")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as e:
        raise EvidenceKeyError(f"{path} is not a PEM public key ({e})") from e
    if not isinstance(key, Ed25519PublicKey):
        raise EvidenceKeyError(f"{path} holds a {type(key).__name__}, not the node's Ed25519 "
                               "evidence key")
    return key


def _create(identity_dir: Path, path: Path) -> None:
    try:
        identity_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        tmp = identity_dir / f".{KEY_FILE}.{os.getpid()}.tmp"
        _write_new(tmp, pem, 0o600)
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
    tmp = public.with_name(f".{public.name}.{os.getpid()}.tmp")
    try:
        _write_new(tmp, public_pem(key), 0o644)
        os.replace(tmp, public)
        sync_dir(public.parent)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise EvidenceKeyError(f"cannot write the public key {public}: {e.strerror or e}") from e


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create `path` with `mode` from the start (never readable by others), write, sync."""
    path.unlink(missing_ok=True)  # a leftover of a crash of this same pid number
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(fd, mode)  # the umask may have taken bits away; set exactly
        f.write(data)
        f.flush()
        os.fsync(fd)
