"""Regions: crops around seeds at the detector's size and aspect, merged, kept inside the
frame, replaced by the whole frame when that is cheaper; detections mapped back and
de-duplicated."""

from __future__ import annotations

from edge.detectors.base import Detection
from edge.vision.geometry import Size, intersection
from edge.vision.regions import detect_in_regions, full_frame, plan_regions, suppress_duplicates
from tests.support.vision_scenes import ColourDetector, scene

FRAME: Size = (1280, 720)
INPUT: Size = (300, 300)


def contains(region: tuple[int, int, int, int], box: tuple[float, ...]) -> bool:
    return region[0] <= box[0] and region[1] <= box[1] and region[2] >= box[2] and (
        region[3] >= box[3]
    )


def test_a_small_seed_gets_a_crop_of_the_detectors_size_centred_on_it() -> None:
    seed = (600.0, 300.0, 630.0, 380.0)
    [region] = plan_regions([seed], FRAME, INPUT)
    x1, y1, x2, y2 = region
    assert (x2 - x1, y2 - y1) == INPUT
    assert contains(region, seed)
    assert abs((x1 + x2) / 2 - 615) <= 1 and abs((y1 + y2) / 2 - 340) <= 1


def test_a_large_seed_gets_a_margin_and_the_detectors_aspect() -> None:
    seed = (100.0, 100.0, 500.0, 300.0)  # 400 x 200
    [region] = plan_regions([seed], FRAME, INPUT, margin=0.25)
    w, h = region[2] - region[0], region[3] - region[1]
    assert w == h >= 600  # 400 plus a quarter each side, squared for a square input
    assert contains(region, seed)


def test_a_seed_at_the_edge_is_shifted_into_the_frame_not_cut() -> None:
    [region] = plan_regions([(0.0, 690.0, 20.0, 720.0)], FRAME, INPUT)
    assert region == (0, 420, 300, 720)


def test_overlapping_regions_merge_into_one_that_covers_both_seeds() -> None:
    a, b = (400.0, 300.0, 430.0, 380.0), (560.0, 320.0, 590.0, 400.0)
    [region] = plan_regions([a, b], FRAME, INPUT)
    assert contains(region, a) and contains(region, b)


def test_distant_seeds_get_separate_regions_that_do_not_overlap() -> None:
    a, b = (50.0, 50.0, 80.0, 130.0), (1100.0, 500.0, 1130.0, 580.0)
    regions = plan_regions([a, b], FRAME, INPUT)
    assert len(regions) == 2
    assert intersection(regions[0], regions[1]) == 0
    assert any(contains(r, a) for r in regions) and any(contains(r, b) for r in regions)


def test_too_many_regions_become_one_whole_frame() -> None:
    seeds = [(x, y, x + 20.0, y + 40.0) for x in (20.0, 620.0, 1200.0) for y in (20.0, 600.0)]
    assert plan_regions(seeds, FRAME, INPUT, max_regions=3) == [full_frame(FRAME)]


def test_regions_covering_most_of_the_frame_become_one_whole_frame() -> None:
    seeds = [(100.0, 100.0, 1000.0, 600.0)]
    assert plan_regions(seeds, FRAME, INPUT, max_area_fraction=0.6) == [full_frame(FRAME)]


def test_a_frame_smaller_than_the_input_is_one_region_of_the_frame() -> None:
    assert plan_regions([(10.0, 10.0, 30.0, 30.0)], (200, 150), INPUT) == [(0, 0, 200, 150)]


def test_no_seeds_no_regions() -> None:
    assert plan_regions([], FRAME, INPUT) == []


def test_detections_in_a_crop_come_back_in_frame_pixels() -> None:
    person = (900.0, 400.0, 930.0, 480.0)
    image = scene([(person, "person")], FRAME)
    detector = ColourDetector()
    regions = plan_regions([person], FRAME, INPUT)
    found = detect_in_regions(detector, image, regions)
    assert detector.shapes == [INPUT]  # the detector saw a crop, not the frame
    assert found.inferences == 1
    [det] = found.detections
    assert det.label == "person"
    assert all(abs(u - v) <= 1 for u, v in zip(det.box, person, strict=True))


def test_an_object_seen_by_two_overlapping_crops_is_reported_once() -> None:
    car = (500.0, 300.0, 620.0, 360.0)
    image = scene([(car, "car")], FRAME)
    found = detect_in_regions(ColourDetector(), image, [(400, 200, 700, 500), (450, 250, 750, 550)])
    assert found.inferences == 2
    assert [d.label for d in found.detections] == ["car"]


def test_a_half_seen_object_at_a_crop_edge_is_dropped_and_the_whole_one_kept() -> None:
    car = (560.0, 300.0, 700.0, 360.0)
    image = scene([(car, "car")], FRAME)
    # The first crop cuts the car at x=620; the second sees all of it.
    found = detect_in_regions(ColourDetector(), image, [(320, 200, 620, 500), (500, 200, 800, 500)])
    [det] = found.detections
    assert det.box[0] <= 561 and det.box[2] >= 699


def test_duplicates_of_different_labels_are_both_kept() -> None:
    box = (10.0, 10.0, 50.0, 90.0)
    found = [Detection("person", 1, 0.9, box), Detection("bicycle", 2, 0.8, box)]
    assert {d.label for d in suppress_duplicates(found)} == {"person", "bicycle"}


def test_an_object_cut_by_the_only_crop_is_not_reported_from_it() -> None:
    car = (560.0, 300.0, 700.0, 360.0)
    image = scene([(car, "car")], FRAME)
    assert detect_in_regions(ColourDetector(), image, [(320, 200, 620, 500)]).detections == []
