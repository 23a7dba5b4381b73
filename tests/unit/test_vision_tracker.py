"""Tracks keep their ids while they coast between detector runs, are missed only where the
detector looked, and go after too many misses or too long unseen."""

from __future__ import annotations

from edge.detectors.base import Box, Detection
from edge.vision.geometry import iou
from edge.vision.tracker import Tracker, TrackerSettings

FRAME = (1280, 720)


def person(box: Box, score: float = 0.8, label: str = "person") -> Detection:
    return Detection(label, 1, score, box)


def walker(t: float, x0: float = 100.0, speed: float = 80.0) -> Box:
    """A person walking right at `speed` px/s."""
    x = x0 + speed * t
    return (x, 300.0, x + 40, 400.0)


def test_a_walker_keeps_one_id_while_coasting_between_runs_every_fourth_frame() -> None:
    tracker = Tracker(FRAME)
    ids = set()
    for frame in range(100):
        t = frame / 10
        tracker.predict(t)
        if frame % 4 == 0:
            tracker.update([person(walker(t))], t, scanned=None)
        else:
            tracker.coast(t)
        [track] = tracker.tracks
        ids.add(track.id)
        if frame > 8:
            # The prediction between runs follows the walker closely.
            assert iou(track.box, walker(t)) > 0.7
    assert len(ids) == 1
    [track] = tracker.tracks
    assert track.confirmed and abs(track.velocity[0] - 80) < 5


def test_a_track_is_confirmed_only_after_enough_hits() -> None:
    tracker = Tracker(FRAME, TrackerSettings(min_hits=3))
    for hit in range(3):
        tracker.predict(hit * 0.1)
        tracker.update([person(walker(hit * 0.1))], hit * 0.1)
        assert tracker.tracks[0].confirmed == (hit == 2)


def test_a_track_outside_the_scanned_regions_is_not_missed() -> None:
    tracker = Tracker(FRAME, TrackerSettings(max_misses=1, max_age_s=100))
    for i in range(2):
        tracker.predict(i * 0.1)
        tracker.update([person((100.0, 300.0, 140.0, 400.0))], i * 0.1)
    elsewhere = [(800.0, 200.0, 1100.0, 500.0)]
    for i in range(2, 30):
        tracker.predict(i * 0.1)
        assert tracker.update([], i * 0.1, scanned=elsewhere) == []
    [track] = tracker.tracks
    assert track.misses == 0


def test_a_track_the_detector_looked_at_and_did_not_find_is_dropped_after_max_misses() -> None:
    tracker = Tracker(FRAME, TrackerSettings(max_misses=2))
    for i in range(2):
        tracker.predict(i * 0.1)
        tracker.update([person((100.0, 300.0, 140.0, 400.0))], i * 0.1)
    there = [(0.0, 200.0, 300.0, 500.0)]
    removed = []
    for i in range(2, 5):
        tracker.predict(i * 0.1)
        removed += tracker.update([], i * 0.1, scanned=there)
    assert [tr.misses for tr in removed] == [3] and tracker.tracks == []


def test_an_unconfirmed_track_missed_too_often_is_dropped_as_a_false_alarm() -> None:
    tracker = Tracker(FRAME, TrackerSettings(tentative_misses=1))
    tracker.predict(0.0)
    tracker.update([person((100.0, 300.0, 140.0, 400.0))], 0.0)
    tracker.predict(0.1)
    assert tracker.update([], 0.1, scanned=None) == []  # one miss: the detector may blink
    tracker.predict(0.2)
    [gone] = tracker.update([], 0.2, scanned=None)
    assert not gone.confirmed and tracker.tracks == []


def test_a_track_unseen_for_max_age_goes_even_if_never_scanned() -> None:
    tracker = Tracker(FRAME, TrackerSettings(max_age_s=2.0))
    for i in range(2):
        tracker.predict(i * 0.1)
        tracker.update([person((100.0, 300.0, 140.0, 400.0))], i * 0.1)
    tracker.predict(2.0)
    assert tracker.coast(2.0) == []
    tracker.predict(2.2)
    assert len(tracker.coast(2.2)) == 1


def test_two_people_walking_past_each_other_keep_their_ids() -> None:
    tracker = Tracker(FRAME)
    right_id = left_id = None
    for frame in range(60):
        t = frame / 10
        right, left = walker(t, 100.0, 150.0), walker(t, 1000.0, -150.0)
        tracker.predict(t)
        if frame % 3 == 0:
            tracker.update([person(right), person(left)], t)
        else:
            tracker.coast(t)
        if frame == 3:
            right_id = max(tracker.tracks, key=lambda tr: iou(tr.box, right)).id
            left_id = max(tracker.tracks, key=lambda tr: iou(tr.box, left)).id
    assert len(tracker.tracks) == 2 and right_id != left_id
    final_right = max(tracker.tracks, key=lambda tr: iou(tr.box, walker(5.9, 100.0, 150.0)))
    assert final_right.id == right_id and final_right.velocity[0] > 100


def test_someone_standing_still_becomes_stationary_and_moving_again_clears_it() -> None:
    tracker = Tracker(FRAME, TrackerSettings(stationary_s=3.0, stationary_fraction=0.15))
    still = (500.0, 300.0, 540.0, 400.0)
    for frame in range(50):
        t = frame / 10
        tracker.predict(t)
        jitter = 2.0 if frame % 2 else -2.0  # detector boxes wobble a little
        tracker.update([person((still[0] + jitter, 300.0, still[2] + jitter, 400.0))], t)
        assert tracker.tracks[0].stationary == (t >= 3.0)
    for frame in range(50, 60):
        t = frame / 10
        tracker.predict(t)
        x = 500.0 + 60 * (t - 5.0)
        tracker.update([person((x, 300.0, x + 40, 400.0))], t)
    assert not tracker.tracks[0].stationary


def test_the_label_is_the_one_seen_most_and_a_car_may_be_called_a_truck() -> None:
    tracker = Tracker(FRAME)
    box = (300.0, 300.0, 500.0, 400.0)
    labels = ["car", "truck", "car", "car", "truck"]
    for i, label in enumerate(labels):
        tracker.predict(i * 0.1)
        tracker.update([person(box, 0.7, label)], i * 0.1)
    [track] = tracker.tracks
    assert track.label == "car" and track.hits == 5


def test_a_person_is_never_matched_to_a_car_in_the_same_place() -> None:
    tracker = Tracker(FRAME)
    box = (300.0, 300.0, 500.0, 400.0)
    tracker.predict(0.0)
    tracker.update([person(box, label="car")], 0.0)
    tracker.predict(0.1)
    tracker.update([person(box, label="car"), person((310.0, 290.0, 350.0, 400.0))], 0.1)
    assert sorted(tr.label for tr in tracker.tracks) == ["car", "person"]
