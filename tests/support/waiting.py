"""Waiting for something to happen in another thread or process, without timing asserts."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(cond: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll until cond() is truthy and return its value; fail naming `what` after timeout.

    The timeout only bounds a failing test: it is generous because this machine is shared."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.005)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
