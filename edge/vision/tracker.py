"""Tracks: objects followed from frame to frame under stable integer ids.

Detections are matched to where each track is expected (constant velocity since its last
detection), greedily by overlap. Between detector runs tracks coast on that prediction. A
track is confirmed after a few hits; it is missed only when the detector looked where the
track should be and did not find it, so an object outside the scanned regions is not lost.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from edge.detectors.base import Box, Detection
from edge.vision.geometry import Size, area, centre, intersection, iou

# Labels a detector confuses for one another on the same object; a track may switch among them.
_VEHICLES = frozenset({"car", "truck", "bus"})


def _compatible(a: str, b: str) -> bool:
    return a == b or (a in _VEHICLES and b in _VEHICLES)


@dataclass(slots=True, eq=False)
class Track:
    """One object followed over time; `box` is where it is (or is predicted to be) now."""

    id: int
    label: str
    score: float  # best detection score so far
    box: Box
    first_seen: float
    last_seen: float  # time of the last detection matched to it
    velocity: tuple[float, float] = (0.0, 0.0)  # of the box centre, pixels per second
    hits: int = 1
    misses: int = 0
    confirmed: bool = False
    found_in_crop: bool = False  # its first detection came from a region, not the whole frame
    stationary: bool = False
    detected_box: Box = (0.0, 0.0, 0.0, 0.0)  # the last detection's box, at `last_seen`
    votes: dict[str, float] = field(default_factory=dict)  # label -> summed score
    path: deque[tuple[float, float, float]] = field(default_factory=deque)  # (t, cx, cy)


@dataclass(frozen=True, slots=True)
class TrackerSettings:
    """How tracks are kept. Times in seconds, sizes as shares of the track's box size."""

    min_hits: int = 2  # detections before a track is confirmed
    max_misses: int = 3  # scanned misses a confirmed track survives
    tentative_misses: int = 1  # scanned misses an unconfirmed track survives
    # Longest a track lives without a detection, scanned or not: over two refreshes of the
    # gate, so one refresh that misses a parked car does not end it.
    max_age_s: float = 12.0
    match_iou: float = 0.1  # least overlap of a detection with a prediction to match it
    # Without overlap, a detection matches within this centre distance, plus max_speed for
    # every second the track went unseen.
    match_distance: float = 0.5
    max_speed: float = 1.5
    velocity_smoothing: float = 0.5  # weight of a new two-point velocity (few detections)
    velocity_window_s: float = 1.0  # with three detections in it, velocity is a line fit
    max_coast_s: float = 2.0  # a prediction stops moving after this long unseen
    # Stationary: the centre wandered less than this share of the box size for stationary_s.
    stationary_fraction: float = 0.15
    stationary_s: float = 3.0


class Tracker:
    """Keeps the tracks of one camera on frames of `frame_size`."""

    def __init__(self, frame_size: Size, settings: TrackerSettings | None = None) -> None:
        self.frame_size = frame_size
        self.settings = settings or TrackerSettings()
        self.tracks: list[Track] = []
        self._ids = itertools.count(1)

    def predict(self, t: float) -> list[Track]:
        """Move every track to where constant velocity puts it at time `t`."""
        for track in self.tracks:
            dt = min(max(t - track.last_seen, 0.0), self.settings.max_coast_s)
            vx, vy = track.velocity
            b = track.detected_box
            track.box = (b[0] + vx * dt, b[1] + vy * dt, b[2] + vx * dt, b[3] + vy * dt)
        return self.tracks

    def update(
        self, detections: Sequence[Detection], t: float, scanned: Sequence[Box] | None = None
    ) -> list[Track]:
        """Match one detector run at time `t` to the tracks (call `predict(t)` first).

        `scanned`: the regions the detector looked at, None for the whole frame. Returns the
        tracks removed by this update.
        """
        matched_tracks: set[int] = set()
        matched_detections: set[int] = set()
        for ti, di in self._pairs(detections, t):
            if ti in matched_tracks or di in matched_detections:
                continue
            matched_tracks.add(ti)
            matched_detections.add(di)
            self._hit(self.tracks[ti], detections[di], t)
        for ti, track in enumerate(self.tracks):
            if ti not in matched_tracks and _looked_at(track.box, scanned):
                track.misses += 1
        for di, det in enumerate(detections):
            if di not in matched_detections:
                self._start(det, t, in_crop=scanned is not None)
        return self._drop(t)

    def coast(self, t: float) -> list[Track]:
        """A frame without a detector run: tracks keep their predictions; the too old go."""
        return self._drop(t)

    def _pairs(self, detections: Sequence[Detection], t: float) -> list[tuple[int, int]]:
        """Candidate (track, detection) pairs, most alike first."""
        cfg = self.settings
        candidates: list[tuple[float, int, int]] = []
        for ti, track in enumerate(self.tracks):
            tx, ty = centre(track.box)
            b = track.box
            size = max(b[2] - b[0], b[3] - b[1], 1.0)
            # How far off its prediction an object can be: more the longer it went unseen.
            reach = size * (cfg.match_distance + cfg.max_speed * max(t - track.last_seen, 0.0))
            for di, det in enumerate(detections):
                if not _compatible(track.label, det.label):
                    continue
                overlap = iou(track.box, det.box)
                if overlap >= cfg.match_iou:
                    candidates.append((overlap, ti, di))
                    continue
                dx, dy = centre(det.box)
                near = 1.0 - math.hypot(dx - tx, dy - ty) / reach
                ratio = area(det.box) / max(area(track.box), 1.0)
                if near > 0 and 0.5 <= ratio <= 2.0:
                    # Ranked below any overlapping pair: distance only bridges a gap.
                    candidates.append((near * cfg.match_iou * 0.99, ti, di))
        candidates.sort(key=lambda c: c[0], reverse=True)
        return [(ti, di) for _, ti, di in candidates]

    def _start(self, det: Detection, t: float, in_crop: bool) -> None:
        track = Track(
            id=next(self._ids), label=det.label, score=det.score, box=det.box, first_seen=t,
            last_seen=t, detected_box=det.box, votes={det.label: det.score},
            confirmed=self.settings.min_hits <= 1, found_in_crop=in_crop,
        )
        track.path.append((t, *centre(det.box)))
        self.tracks.append(track)

    def _hit(self, track: Track, det: Detection, t: float) -> None:
        dt = t - track.last_seen
        if dt > 0:
            (ox, oy), (nx, ny) = centre(track.detected_box), centre(det.box)
            measured = ((nx - ox) / dt, (ny - oy) / dt)
            # The first measured velocity is taken as is; later ones smooth detector jitter.
            s = 1.0 if track.hits == 1 else self.settings.velocity_smoothing
            vx, vy = track.velocity
            track.velocity = (s * measured[0] + (1 - s) * vx, s * measured[1] + (1 - s) * vy)
        track.box = track.detected_box = det.box
        track.last_seen = t
        track.hits += 1
        track.misses = 0
        track.score = max(track.score, det.score)
        track.votes[det.label] = track.votes.get(det.label, 0.0) + det.score
        track.label = max(track.votes, key=lambda label: track.votes[label])
        track.confirmed = track.confirmed or track.hits >= self.settings.min_hits
        track.path.append((t, *centre(det.box)))
        if self.settings.velocity_window_s > 0:
            fitted = _fitted_velocity(track.path, t - self.settings.velocity_window_s)
            if fitted is not None:
                track.velocity = fitted
        self._judge_stationary(track, t)

    def _judge_stationary(self, track: Track, t: float) -> None:
        path = track.path
        # Keep exactly one point at or before the window's start, so the window is covered.
        while len(path) > 2 and path[1][0] <= t - self.settings.stationary_s:
            path.popleft()
        if path[0][0] > t - self.settings.stationary_s:
            return  # not watched long enough to judge
        _, x0, y0 = path[0]
        wander = max(math.hypot(x - x0, y - y0) for _, x, y in path)
        b = track.detected_box
        size = max(b[2] - b[0], b[3] - b[1])
        # Hysteresis: a standing person shifting weight does not flip the flag back and forth.
        limit = self.settings.stationary_fraction * size * (2.0 if track.stationary else 1.0)
        track.stationary = wander <= limit
        if track.stationary:
            track.velocity = (0.0, 0.0)

    def _drop(self, t: float) -> list[Track]:
        w, h = self.frame_size
        gone: list[Track] = []
        live: list[Track] = []
        for track in self.tracks:
            cx, cy = centre(track.box)
            lost = track.misses > (
                self.settings.max_misses if track.confirmed else self.settings.tentative_misses
            )
            stale = t - track.last_seen > self.settings.max_age_s
            if lost or stale or not (0 <= cx < w and 0 <= cy < h):
                gone.append(track)
            else:
                live.append(track)
        self.tracks = live
        return gone


def _looked_at(box: Box, scanned: Sequence[Box] | None) -> bool:
    """Whether `box` lay (nearly) whole inside one region the detector ran on: an object a
    region cuts is not reported from it, so it is not missed there either."""
    if scanned is None:
        return True
    own = area(box)
    return own > 0 and any(intersection(box, region) >= 0.9 * own for region in scanned)


def _fitted_velocity(
    path: Sequence[tuple[float, float, float]], since: float
) -> tuple[float, float] | None:
    """Least-squares velocity of the path's points from `since` on; None under three points."""
    points = [p for p in path if p[0] >= since]
    if len(points) < 3:
        return None
    n = len(points)
    mt = sum(p[0] for p in points) / n
    mx = sum(p[1] for p in points) / n
    my = sum(p[2] for p in points) / n
    var = sum((p[0] - mt) ** 2 for p in points)
    if var <= 0:
        return None
    return (
        sum((p[0] - mt) * (p[1] - mx) for p in points) / var,
        sum((p[0] - mt) * (p[2] - my) for p in points) / var,
    )
