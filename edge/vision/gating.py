"""When the detector runs, and on which regions: the policy that keeps inference cheap.

Inference is the expensive step on a Raspberry Pi, so most frames run none and tracks
coast on their predicted motion. One scan at most per frame, the first of these that is
due:

- **refresh**: the whole frame every `refresh_s`, so objects that do not move (a parked car,
  a person waiting) are found and kept; also at once after a change of the whole picture;
- **sweep**: every `interval_s` while anything moves (motion or a moving track), regions
  around all motion and all moving tracks, to correct every prediction (mostly the whole
  frame on a busy street, since many crops cost more than one frame);
- **look**: one inference, sooner (`look_gap_s` after the last scan), at what a sweep
  would reach too late: motion appearing away from every track (a newcomer; a crop at
  native resolution, which finds a small person the scaled-down frame loses) and tracks
  seen only once (to confirm them and learn their velocity before the next sweep; in the
  view that found them, crop or whole frame).

Nothing runs on a still scene between refreshes. Tuned on vtest.avi frames 0-499 against
the every-frame baseline (edge/vision/evaluation.py): about 0.25 inferences per frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from edge.detectors.base import Box
from edge.vision.geometry import Size, area, intersection
from edge.vision.motion import Motion
from edge.vision.regions import Region, full_frame, plan_regions
from edge.vision.tracker import Track

# Frame times are sums of float steps: 0.7 - 0.3 must count as 0.4.
_EPS = 1e-6
LOOKS = ("new motion", "unconfirmed")


@dataclass(frozen=True, slots=True)
class GatingPolicy:
    """Tunables of the gate; see the module docstring. `every_frame` scans every frame whole."""

    every_frame: bool = False
    refresh_s: float = 5.0
    interval_s: float = 0.5
    look_gap_s: float = 0.2
    region_margin: float = 0.25
    max_regions: int = 2
    max_region_area_fraction: float = 0.6
    # Motion inside a track's box grown by this share of its size belongs to that track.
    track_margin: float = 0.5
    # Slower than this (box sizes per second) a track needs no sweeps of its own.
    still_speed: float = 0.05
    looks: tuple[str, ...] = ("new motion", "unconfirmed")
    # An unconfirmed track seen with a lower score waits for the next sweep: with a low
    # detector threshold, faint false alarms would otherwise each cost a look.
    look_min_score: float = 0.5

    def __post_init__(self) -> None:
        unknown = [look for look in self.looks if look not in LOOKS]
        if unknown:
            raise ValueError(f"unknown gating looks {unknown}; known: {', '.join(LOOKS)}")


@dataclass(frozen=True, slots=True)
class Scan:
    """The detector's work for one frame; `whole_frame` when the regions are the frame."""

    regions: list[Region]
    whole_frame: bool
    reason: str


class DetectionGate:
    """Decides, frame by frame, whether and where the detector runs for one camera."""

    def __init__(self, policy: GatingPolicy, frame_size: Size, input_size: Size) -> None:
        self.policy = policy
        self.frame_size = frame_size
        self.input_size = input_size
        self._last_scan = -math.inf
        self._last_sweep = -math.inf
        self._last_full: float | None = None
        self._scanned_motion: list[Box] = []  # motion boxes the detector has looked at

    def plan(self, t: float, motion: Motion, tracks: Sequence[Track]) -> Scan | None:
        """The scan to run on the frame at time `t`, or None to let tracks coast."""
        p = self.policy
        if (
            p.every_frame
            or self._last_full is None
            or t - self._last_full + _EPS >= p.refresh_s
            or motion.scene_changed
        ):
            self._last_full = self._last_sweep = self._last_scan = t
            self._scanned_motion = list(motion.boxes)
            return self._scan([full_frame(self.frame_size)], "every frame" if p.every_frame
                              else "refresh")
        moving = [tr.box for tr in tracks if _moving(tr, p.still_speed)]
        if (motion.boxes or moving) and t - self._last_sweep + _EPS >= p.interval_s:
            self._last_sweep = self._last_scan = t
            self._scanned_motion = list(motion.boxes)
            return self._scan(self._regions([*motion.boxes, *moving]), "sweep")
        if t - self._last_scan + _EPS < p.look_gap_s:
            return None
        for reason in p.looks:
            seeds, whole = self._look_seeds(reason, motion, tracks)
            if seeds:
                self._last_scan = t
                regions = [full_frame(self.frame_size)] if whole else self._regions(seeds)
                return self._scan(regions, reason)
        return None

    def _look_seeds(
        self, reason: str, motion: Motion, tracks: Sequence[Track]
    ) -> tuple[list[Box], bool]:
        """Boxes a look of this kind would cover, and whether it must be the whole frame."""
        if reason == "new motion":
            # New: no track explains it and the detector has not looked at motion there;
            # motion it already looked at and found nothing in does not call it back.
            known = [_grown(tr.box, self.policy.track_margin) for tr in tracks]
            seeds = [
                m for m in motion.boxes
                if _covered(m, known) < 0.5 and _covered(m, self._scanned_motion) == 0.0
            ]
            self._scanned_motion += seeds
            return seeds, False
        # "unconfirmed": confirmed in the same view that found it. The detector does not
        # see alike at both scales (a man half behind a sign is found in the scaled-down
        # frame, not in a crop), and a look in the other view would drop a real newcomer.
        unconfirmed = [
            tr for tr in tracks if not tr.confirmed and tr.score >= self.policy.look_min_score
        ]
        return [tr.box for tr in unconfirmed], any(not tr.found_in_crop for tr in unconfirmed)

    def _regions(self, seeds: list[Box]) -> list[Region]:
        p = self.policy
        return plan_regions(
            seeds, self.frame_size, self.input_size, margin=p.region_margin,
            max_regions=p.max_regions, max_area_fraction=p.max_region_area_fraction,
        )

    def _scan(self, regions: list[Region], reason: str) -> Scan:
        whole = regions == [full_frame(self.frame_size)]
        if whole:
            self._last_full = self._last_scan
        return Scan(regions, whole_frame=whole, reason=reason)


def _grown(box: Box, margin: float) -> Box:
    dx, dy = (box[2] - box[0]) * margin, (box[3] - box[1]) * margin
    return box[0] - dx, box[1] - dy, box[2] + dx, box[3] + dy


def _covered(box: Box, others: Sequence[Box]) -> float:
    """Share of `box` inside `others` (overlaps among them counted twice; capped at 1)."""
    own = area(box)
    if own <= 0:
        return 1.0
    return min(1.0, sum(intersection(box, o) for o in others) / own)


def _moving(track: Track, still_speed: float) -> bool:
    """Whether a track needs sweeps to follow it: unconfirmed, or going somewhere."""
    if not track.confirmed:
        return True
    if track.stationary:
        return False
    b = track.box
    size = max(b[2] - b[0], b[3] - b[1], 1.0)
    return math.hypot(*track.velocity) >= still_speed * size

