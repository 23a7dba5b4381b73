"""Alert ids and the reconnect backoff."""

from __future__ import annotations

import re
import time
import uuid

from contract.ids import uuid7
from drivers.backoff import Backoff

UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_uuid7_is_version_7_unique_and_time_ordered() -> None:
    ids = []
    for _ in range(2000):
        ids.append(uuid7())
    assert all(UUID7.match(i) for i in ids)
    assert len(set(ids)) == len(ids)
    stamps = [uuid.UUID(i).int >> 80 for i in ids]
    assert stamps == sorted(stamps)
    now_ms = time.time_ns() // 1_000_000
    assert abs(stamps[-1] - now_ms) < 60_000


def test_backoff_grows_with_jitter_caps_and_resets() -> None:
    lows = Backoff(0.5, 30, rng=lambda: 0.0)
    highs = Backoff(0.5, 30, rng=lambda: 0.999999)
    low = [lows.next() for _ in range(10)]
    high = [highs.next() for _ in range(10)]
    assert low[:4] == [0.25, 0.5, 1.0, 2.0]  # half of the exponential cap at least
    assert high[0] < 0.5 and high[3] < 4.0
    assert max(high) <= 30 and high[-1] > 29  # capped at max_s
    lows.reset()
    assert lows.next() == 0.25


def test_backoff_spreads_nodes_that_lost_the_hub_together() -> None:
    nodes = [Backoff(1, 60) for _ in range(200)]
    for n in nodes:
        n.next(), n.next(), n.next()
    waits = [n.next() for n in nodes]  # fourth attempt: between 4 and 8 s
    assert all(4 <= w <= 8 for w in waits)
    assert len({round(w, 2) for w in waits}) > 100
