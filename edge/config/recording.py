"""Config section for recording: segment length, disk budget, retention, alert/event windows.

Sizes are written as a technician would: ``20GB``, ``500 MB``, ``1.5GiB``, or a share of the
data partition, ``80%``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, Field, model_validator

from edge.config.base import Section

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(value: object) -> object:
    """'20GB' → 20_000_000_000; numbers pass; '80%' stays a string for the budget."""
    if not isinstance(value, str) or value.strip().endswith("%"):
        return value
    m = _SIZE.match(value)
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"{value!r} is not a size: write e.g. 20GB, 500MB, 2GiB or 80%")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


Size = Annotated[int, BeforeValidator(parse_size), Field(ge=0)]


def parse_share(value: object) -> object:
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return float(value.strip()[:-1]) / 100
        except ValueError:
            raise ValueError(f"{value!r} is not a percentage such as 80%") from None
    return value


class WindowSection(Section):
    before_s: Annotated[float, Field(ge=0, le=3600)]
    after_s: Annotated[float, Field(ge=0, le=3600)]


class RetentionSection(Section):
    """Days each kind of footage is kept; pinned footage outlives the ring buffer."""

    continuous: Annotated[float, Field(gt=0, le=3650)] = 7
    event: Annotated[float, Field(gt=0, le=3650)] = 30
    alert: Annotated[float, Field(gt=0, le=3650)] = 90


class RecordingSection(Section):
    enabled: bool = Field(default=True, description="Record every camera continuously")
    dir: Path | None = Field(
        default=None, description="Where segments and their index live; null: data_dir/recordings"
    )
    segment_s: Annotated[float, Field(ge=2, le=60)] = Field(
        default=10.0, description="Segment length; each is cut on the next keyframe after this"
    )
    budget: Size | None = Field(
        default=None, description="Most the recordings may take, e.g. 20GB; null: no byte limit"
    )
    budget_share: Annotated[float, BeforeValidator(parse_share), Field(gt=0, le=0.95)] | None = (
        Field(default=0.8, description="Most the recordings may take of the data partition, "
              "e.g. 80%; the smaller of budget and budget_share wins")
    )
    min_free: Size = Field(
        default=1_000_000_000, description="Always leave this much free on the data partition"
    )
    retention_days: RetentionSection = Field(default_factory=RetentionSection)
    alert_window: WindowSection = Field(
        default_factory=lambda: WindowSection(before_s=30, after_s=60),
        description="Footage pinned around an alert (call button, inputs)",
    )
    event_window: WindowSection = Field(
        default_factory=lambda: WindowSection(before_s=5, after_s=10),
        description="Footage pinned around a vision event, from its start to its end",
    )
    encode_bitrate: Annotated[int, Field(ge=100_000, le=50_000_000)] = Field(
        default=2_000_000,
        description="Bits/s for sources that give no H.264 and are encoded here (USB, other "
        "codecs); H.264 sources are recorded as they come",
    )

    @model_validator(mode="after")
    def _some_limit(self) -> RecordingSection:
        if self.budget is None and self.budget_share is None:
            raise ValueError("set budget (e.g. 20GB) or budget_share (e.g. 80%), or both")
        return self
