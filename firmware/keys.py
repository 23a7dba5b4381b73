"""Release keys: the Ed25519 keys that sign firmware bundles. The private key stays with
whoever makes releases (PKCS8 PEM, mode 0600); its public half (`<name>.pub`, next to it) goes
into the image's TRUSTED_DIR, and a node installs only bundles signed by a key found there.
A key is named by its id: the first 16 hex digits of the SHA-256 of the raw public key."""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from drivers.storage import write_new

TRUSTED_DIR = Path("/usr/lib/safecity-edge/release-keys")


class ReleaseKeyError(Exception):
    """A release key cannot be made or read; the message names the file and what to do."""


def public_path(path: Path) -> Path:
    """Where the public half of the private key at `path` lives: `release.pem` → `release.pub`."""
    return path.with_suffix(".pub")


def generate(path: Path) -> Ed25519PrivateKey:
    """A new release key written to `path` (mode 0600) and its public half to `<name>.pub`."""
    public = public_path(path)
    if path == public:
        raise ReleaseKeyError(f"{path} ends in .pub, the name of a public key; name the "
                              "private key e.g. release.pem")
    for existing in (path, public):
        if existing.exists():
            raise ReleaseKeyError(f"{existing} already exists; a release key is never "
                                  "overwritten (nodes may trust it): choose another name")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_new(path, pem, 0o600)
        write_new(public, public_pem(key.public_key()), 0o644)
    except FileExistsError as e:  # made by someone else since the check above
        raise ReleaseKeyError(f"{e.filename} already exists; choose another name") from e
    except OSError as e:
        raise ReleaseKeyError(f"cannot write the release key {path}: {e.strerror or e}") from e
    return key


def load_private(path: Path) -> Ed25519PrivateKey:
    """The release key at `path` (unencrypted PKCS8 PEM, as generate() writes it)."""
    try:
        key = serialization.load_pem_private_key(_read(path), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise ReleaseKeyError(f"{path} is not an unencrypted PEM private key ({e})") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise ReleaseKeyError(f"{path} holds a {type(key).__name__}, not an Ed25519 release key")
    return key


def load_public(path: Path) -> Ed25519PublicKey:
    """A public release key from a PEM file (SubjectPublicKeyInfo)."""
    data = _read(path)
    if b"PRIVATE KEY" in data:
        raise ReleaseKeyError(f"{path} is a private key; only public keys ({path.stem}.pub) "
                              "belong with the trusted keys")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as e:
        raise ReleaseKeyError(f"{path} is not a PEM public key ({e}); remove or replace it") from e
    if not isinstance(key, Ed25519PublicKey):
        raise ReleaseKeyError(f"{path} holds a {type(key).__name__}, not an Ed25519 release key")
    return key


def load_trusted(folder: Path = TRUSTED_DIR) -> list[Ed25519PublicKey]:
    """Every `*.pub` in `folder`, by file name; an empty folder trusts no key."""
    if not folder.is_dir():
        raise ReleaseKeyError(f"the trusted release keys folder {folder} does not exist; the "
                              "image build puts the release keys' .pub files there")
    return [load_public(path) for path in sorted(folder.glob("*.pub"))]


def key_id(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """The key's id: 16 hex digits of the SHA-256 of the raw public key."""
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise ReleaseKeyError(f"cannot read the release key {path}: {e.strerror or e}") from e
