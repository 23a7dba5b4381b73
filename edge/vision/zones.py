"""Zones: named areas of the picture (a crossing, a doorway, the square around the pole).

An object is in a zone when the point it stands on (bottom-centre of its box: feet, wheels)
is inside the zone's polygon. Per track this says which zones it entered and left on a
frame, how long it has been in each, and where it loiters (stays at least the zone's
`loiter_s`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from edge.detectors.base import Box
from edge.vision.geometry import Size, bottom_centre
from edge.vision.polygons import Polygon, point_in_polygon, polygon_pixels


@dataclass(frozen=True, slots=True)
class Zone:
    """A named polygon in normalised (0..1) frame coordinates; `loiter_s` None: no loitering."""

    name: str
    polygon: Polygon
    loiter_s: float | None = None


@dataclass(frozen=True, slots=True)
class ZoneStatus:
    """Where one track is relative to the zones on one frame."""

    zones: tuple[str, ...]  # the zones it is in now
    entered: tuple[str, ...]  # entered on this frame
    left: tuple[str, ...]  # left on this frame
    dwell_s: dict[str, float]  # seconds in each current zone
    loitering: tuple[str, ...]  # current zones where dwell reached loiter_s


@dataclass(slots=True)
class _Presence:
    since: dict[str, float] = field(default_factory=dict)  # zone -> time entered
    outside_since: dict[str, float] = field(default_factory=dict)  # zone -> time it stepped out


class ZoneMap:
    """The zones of one camera on frames of one size, and where each track is in them.

    `leave_after_s`: a track counts as having left a zone only after standing outside it
    this long, so a box jittering on the boundary does not enter and leave on every frame.
    """

    def __init__(self, zones: Sequence[Zone], frame_size: Size, *, leave_after_s: float = 0.5
                 ) -> None:
        names = [z.name for z in zones]
        if len(set(names)) != len(names):
            raise ValueError(f"zone names must be unique, got {names}")
        self.zones = list(zones)
        self.frame_size = frame_size
        self.leave_after_s = leave_after_s
        self._pixels: list[npt.NDArray[np.int32]] = [
            polygon_pixels(z.polygon, frame_size) for z in zones
        ]
        self._presence: dict[int, _Presence] = {}

    def inside(self, box: Box) -> tuple[str, ...]:
        """Zones that contain the bottom-centre of a pixel box."""
        foot = bottom_centre(box)
        return tuple(
            z.name for z, poly in zip(self.zones, self._pixels, strict=True)
            if point_in_polygon(foot, poly)
        )

    def update(self, tracks: Iterable[tuple[int, Box]], t: float) -> dict[int, ZoneStatus]:
        """Status of each (track id, pixel box) at time `t`; tracks not passed keep their state."""
        statuses: dict[int, ZoneStatus] = {}
        for track_id, box in tracks:
            presence = self._presence.setdefault(track_id, _Presence())
            now_in = set(self.inside(box))
            entered = [z for z in now_in if z not in presence.since]
            for name in entered:
                presence.since[name] = t
            left: list[str] = []
            for name in list(presence.since):
                if name in now_in:
                    presence.outside_since.pop(name, None)
                    continue
                stepped_out = presence.outside_since.setdefault(name, t)
                if t - stepped_out >= self.leave_after_s:
                    del presence.since[name]
                    del presence.outside_since[name]
                    left.append(name)
            statuses[track_id] = self._status(presence, t, entered, left)
        return statuses

    def forget(self, track_id: int) -> None:
        """The track is gone; drop its state."""
        self._presence.pop(track_id, None)

    def _status(self, presence: _Presence, t: float, entered: list[str], left: list[str]
                ) -> ZoneStatus:
        order = [z.name for z in self.zones]
        current = tuple(n for n in order if n in presence.since)
        dwell = {n: round(t - presence.since[n], 3) for n in current}
        loitering = tuple(
            z.name for z in self.zones
            if z.loiter_s is not None and z.name in dwell and dwell[z.name] >= z.loiter_s
        )
        return ZoneStatus(
            zones=current,
            entered=tuple(n for n in order if n in entered),
            left=tuple(n for n in order if n in left),
            dwell_s=dwell,
            loitering=loitering,
        )
