"""Fixtures for the driver tests: a fresh gpiozero MockFactory per test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from drivers.gpio import make_pin_factory


@pytest.fixture
def factory() -> Iterator[Any]:
    factory = make_pin_factory("mock")
    assert factory is not None  # None only for gpiozero's default
    yield factory
    factory.reset()
