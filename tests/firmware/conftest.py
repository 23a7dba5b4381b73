"""A release key made for each test, and the node's trusted keys folder holding its public
half (as the image build puts it there)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware import keys


@pytest.fixture
def key(tmp_path: Path) -> Ed25519PrivateKey:
    return keys.generate(tmp_path / "release-keys" / "release.pem")


@pytest.fixture
def trusted(tmp_path: Path, key: Ed25519PrivateKey) -> list[Any]:
    return keys.load_trusted(tmp_path / "release-keys")
