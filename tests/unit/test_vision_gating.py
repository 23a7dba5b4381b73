"""The gate: when the detector runs and where, on scripted motion and tracks."""

from __future__ import annotations

from typing import Any

import pytest

from edge.detectors.base import Box
from edge.vision.gating import DetectionGate, GatingPolicy
from edge.vision.motion import Motion
from edge.vision.regions import full_frame
from edge.vision.tracker import Track

FRAME = (1280, 720)
INPUT = (300, 300)
STILL = Motion([], 0.0)


def walker_track(box: Box, confirmed: bool = True, vx: float = 50.0, score: float = 0.9,
                 in_crop: bool = False) -> Track:
    return Track(id=1, label="person", score=score, box=box, first_seen=0.0, last_seen=0.0,
                 velocity=(vx, 0.0), confirmed=confirmed, detected_box=box,
                 found_in_crop=in_crop)


def gate(**policy: Any) -> DetectionGate:
    g = DetectionGate(GatingPolicy(**policy), FRAME, INPUT)
    assert g.plan(0.0, STILL, []) is not None  # the first frame is always looked at whole
    return g


def test_a_still_scene_is_scanned_whole_once_per_refresh_only() -> None:
    g = gate(refresh_s=5.0)
    scans = {i: g.plan(i / 10, STILL, []) for i in range(1, 120)}
    ran = {i: s for i, s in scans.items() if s is not None}
    assert sorted(ran) == [50, 100]
    assert all(s.whole_frame and s.reason == "refresh" for s in ran.values())


def test_a_moving_track_is_swept_every_interval_and_coasts_between() -> None:
    g = gate(interval_s=0.5, refresh_s=100.0)
    track = walker_track((600.0, 300.0, 630.0, 380.0))
    ran = [i for i in range(1, 30) if g.plan(i / 10, STILL, [track])]
    assert ran == [5, 10, 15, 20, 25]


def test_motion_away_from_every_track_is_looked_at_soon_in_a_crop_there() -> None:
    g = gate(interval_s=0.5, look_gap_s=0.2, refresh_s=100.0)
    track = walker_track((600.0, 300.0, 630.0, 380.0))
    assert g.plan(0.1, STILL, [track]) is None
    newcomer = (100.0, 500.0, 130.0, 580.0)
    scan = g.plan(0.2, Motion([newcomer, (598.0, 298.0, 640.0, 384.0)], 0.01), [track])
    assert scan is not None and scan.reason == "new motion" and not scan.whole_frame
    [(x1, y1, x2, y2)] = scan.regions
    assert x1 <= 100 and x2 >= 130 and y1 <= 500 and y2 >= 580 and x2 - x1 == 300
    # Motion the detector has looked at (and found nothing in) does not call it back.
    assert g.plan(0.4, Motion([newcomer], 0.01), [track]) is None


def test_a_track_seen_once_is_looked_at_again_in_the_view_that_found_it() -> None:
    box = (600.0, 300.0, 630.0, 380.0)
    for in_crop in (True, False):
        g = gate(interval_s=0.5, look_gap_s=0.2, refresh_s=100.0)
        tentative = walker_track(box, confirmed=False, vx=0.0, in_crop=in_crop)
        assert g.plan(0.1, STILL, [tentative]) is None
        scan = g.plan(0.2, STILL, [tentative])
        assert scan is not None and scan.reason == "unconfirmed"
        assert scan.whole_frame == (not in_crop)


def test_a_faint_track_seen_once_waits_for_the_next_sweep() -> None:
    g = gate(interval_s=0.5, look_gap_s=0.2, refresh_s=100.0, look_min_score=0.5)
    faint = walker_track((600.0, 300.0, 630.0, 380.0), confirmed=False, score=0.35)
    assert [i for i in range(1, 11) if g.plan(i / 10, STILL, [faint])] == [5, 10]


def test_a_whole_picture_change_is_scanned_whole_at_once() -> None:
    g = gate(refresh_s=100.0)
    scan = g.plan(0.1, Motion([], 0.9, scene_changed=True), [])
    assert scan is not None and scan.whole_frame and scan.regions == [full_frame(FRAME)]


def test_every_frame_mode_scans_every_frame_whole() -> None:
    g = gate(every_frame=True)
    scans = [g.plan(i / 10, STILL, []) for i in range(1, 20)]
    assert all(s is not None and s.whole_frame for s in scans)


def test_an_unknown_look_is_a_config_error_not_a_crash_later() -> None:
    with pytest.raises(ValueError, match="unknown gating looks"):
        GatingPolicy(looks=("new motion", "crowds"))
