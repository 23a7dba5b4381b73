"""The hub's clock: UTC wall time for acks, requests and the console's log; monotonic time
for waits. The hub runs on its own machine, so it keeps its own clock, not the pole's."""

from __future__ import annotations

import time
from datetime import UTC, datetime

monotonic = time.monotonic


def now() -> datetime:
    """Current UTC time, timezone-aware."""
    return datetime.now(UTC)
