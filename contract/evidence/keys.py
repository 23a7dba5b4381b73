"""A node's public evidence key: read from its PEM file, written as PEM, fingerprinted.

Each node signs its clips' manifests with an Ed25519 key made on the node (edge.record.signing);
its public half (`evidence-ed25519.pub.pem`) is what the hub checks manifests against. A
person compares keys by their fingerprint: the first 16 hex digits of the SHA-256 of the raw
public key, in groups of four (``3f2a-91c0-5be7-d41e``).
"""

from __future__ import annotations

from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from contract.evidence.keyfiles import PUBLIC_FILE, fingerprint_of


class EvidenceKeyError(RuntimeError):
    """A key file cannot be read or made; the message names the file and what to do."""


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
