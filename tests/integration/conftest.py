"""Fixtures the clip tests share: the hub asking for clips, and the evidence store that takes
the uploads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devkit.localbroker import LocalBroker
from hub.evidence import EvidenceStore
from tests.support.hub_clients import Hub


@pytest.fixture
def hub(broker: LocalBroker) -> Iterator[Hub]:
    h = Hub(broker)
    yield h
    h.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EvidenceStore]:
    s = EvidenceStore(tmp_path / "evidence")
    s.start()
    yield s
    s.stop()
