"""Motion: something moving on a still background gives a box where it is, in full-frame
pixels; a still picture and masked areas give none."""

from __future__ import annotations

from edge.vision.geometry import iou
from edge.vision.motion import MotionDetector
from tests.support.vision_scenes import SIZE, background, scene


def person_at(x: float) -> tuple[float, float, float, float]:
    return (x, 200.0, x + 30, 280.0)


def test_a_moving_object_gives_a_box_around_it_in_frame_pixels() -> None:
    motion = MotionDetector(SIZE)
    for i in range(5):
        found = motion.detect(scene([(person_at(100 + 10 * i), "person")]))
    assert len(found.boxes) >= 1
    now = person_at(140)
    best = max(found.boxes, key=lambda b: iou(b, now))
    # The box covers the person now (a faint trail of where it was may widen it).
    assert best[0] <= now[0] + 4 and best[2] >= now[2] - 4
    assert best[1] <= now[1] + 4 and best[3] >= now[3] - 4
    assert best[2] - best[0] < 150 and best[3] - best[1] < 140
    assert 0 < found.area_fraction < 0.1


def test_a_still_picture_gives_no_motion() -> None:
    motion = MotionDetector(SIZE)
    still = scene([(person_at(100), "person")])
    results = [motion.detect(still.copy()) for _ in range(20)]
    assert all(r.boxes == [] for r in results)
    assert all(r.area_fraction == 0.0 for r in results)


def test_motion_inside_a_motion_mask_is_ignored() -> None:
    tree = [(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)]  # left half of the picture
    motion = MotionDetector(SIZE, masks=[tree])
    for i in range(5):
        found = motion.detect(scene([(person_at(60 + 10 * i), "person")]))
        assert found.boxes == []
    for i in range(5):
        found = motion.detect(scene([(person_at(420 + 10 * i), "person")]))
    assert len(found.boxes) == 1 and found.boxes[0][0] > 320


def test_small_flicker_under_the_minimum_area_is_not_motion() -> None:
    motion = MotionDetector(SIZE, min_area_fraction=0.001)
    base = background()
    motion.detect(base.copy())
    flicker = base.copy()
    flicker[100:103, 100:103] = 255
    assert motion.detect(flicker).boxes == []


def test_a_whole_picture_change_is_reported_and_relearned_not_boxed_forever() -> None:
    motion = MotionDetector(SIZE)
    motion.detect(background())
    dark = (background() // 4).astype("uint8")
    changed = motion.detect(dark)
    assert changed.area_fraction > 0.6 and changed.boxes == []
    assert motion.detect(dark.copy()).boxes == []  # the new picture is the background now
