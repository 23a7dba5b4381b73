"""Figures for people and for the summary: percentile() of a list of latencies, duration()
of a span as the console shows it, ms_between() two times.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), interpolating between ranks as numpy's default does."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    s = sorted(values)
    pos = (len(s) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def ms_between(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds() * 1000


def duration(seconds: float) -> str:
    """A span for people: 42s, 3m05s, 1h02m (negative spans, from skewed clocks, show 0s)."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
