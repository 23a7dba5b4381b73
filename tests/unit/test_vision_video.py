"""The pipeline on real street footage (vtest.avi, evaluation frames 0-499) with the real int8
detector: people are found and followed under stable ids, a zone yields one story per
person, and a privacy mask keeps a part of the street out of detection and snapshots."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import edge.detectors.tflite_cpu  # noqa: F401  (registers the "tflite" detector)
from devkit.evaluation import vtest_frames
from edge.detectors import Detector, create
from edge.detectors.base import Box, Detection
from edge.vision.events import VisionEvent
from edge.vision.geometry import area, intersection, iou
from edge.vision.pipeline import FramePipeline
from edge.vision.snapshots import SnapshotStore
from edge.vision.zones import Zone
from tests.support.vision_scenes import read_jpeg

FPS = 10.0
WIDTH, HEIGHT = 768, 576
# The footpath west of the lamp post, left edge of the picture.
WEST_PATH = Zone("west_path", [(0.0, 0.35), (0.2, 0.35), (0.2, 0.55), (0.0, 0.55)])
# The man in the dark striped top walking west along the path, frames 201-279 (every 6th, so
# scanned and coasting frames both), checked by eye: from x~230 to the left edge, with a
# pause near x~50.
WEST_WALKER: list[tuple[int, Box]] = [
    (201, (216, 194, 246, 262)), (207, (168, 184, 207, 269)), (213, (138, 184, 173, 259)),
    (219, (99, 181, 129, 252)), (225, (69, 191, 95, 252)), (231, (39, 175, 69, 246)),
    (237, (39, 175, 65, 246)), (243, (35, 175, 65, 246)), (249, (39, 175, 65, 246)),
    (255, (39, 175, 65, 246)), (261, (39, 171, 69, 249)), (267, (35, 175, 65, 246)),
    (273, (22, 175, 52, 246)), (279, (4, 168, 35, 243)),
]
# Right half of the road, where most people walk: blanked for the privacy test.
ROAD_EAST = [(0.6, 0.3), (1.0, 0.3), (1.0, 0.7), (0.6, 0.7)]
ROAD_EAST_PX: Box = (0.6 * WIDTH, 0.3 * HEIGHT, WIDTH, 0.7 * HEIGHT)


@pytest.fixture(scope="module")
def detector() -> Detector:
    return create("tflite", model="int8", threads=2, score_threshold=0.5,
                  labels=["person", "car", "bus", "truck", "motorcycle", "bicycle"])


@dataclass
class Run:
    events: list[VisionEvent]
    tracks: dict[int, list[tuple[int, Box, str]]]  # frame -> confirmed (track id, box, label)
    detections: list[Detection]
    inferences: int
    frames: int


def play(pipeline: FramePipeline, frames: range) -> Run:
    run = Run([], {}, [], 0, 0)
    for index, image in zip(frames, vtest_frames(frames), strict=True):
        result = pipeline.process(image, index / FPS)
        run.events += result.events
        run.detections += result.detections
        run.inferences += result.inferences
        run.frames += 1
        run.tracks[index] = [(t.id, t.box, t.label) for t in pipeline.tracks if t.confirmed]
    run.events += pipeline.close(frames.stop / FPS)
    return run


@pytest.fixture(scope="module")
def street(detector: Detector) -> Run:
    """The gated pipeline over the evaluation frames, with the west path as a zone."""
    return play(FramePipeline("street", detector, zones=[WEST_PATH]), range(0, 500))


def test_people_are_detected_and_the_gate_spends_few_inferences(street: Run) -> None:
    people = [d for d in street.detections if d.label == "person"]
    assert len(people) > 300  # a busy square: several people on every scanned frame
    assert street.inferences / street.frames <= 0.3
    labels = Counter(e.label for e in street.events if e.phase == "new")
    assert labels["person"] >= 15


def test_a_man_walking_west_keeps_one_id_for_most_of_his_walk(street: Run) -> None:
    ids = []
    for frame, box in WEST_WALKER:
        near = [(iou(b, box), tid) for tid, b, label in street.tracks[frame]
                if label == "person"]
        best = max(near, default=(0.0, None))
        if best[0] >= 0.3:
            ids.append(best[1])
    assert len(ids) >= 0.8 * len(WEST_WALKER), "he is tracked on most of his walk"
    [(_, most)] = Counter(ids).most_common(1)
    assert most >= 0.8 * len(WEST_WALKER), f"one id for most of the walk, got {ids}"


def test_every_event_has_one_new_first_and_one_end_last(street: Run) -> None:
    stories: dict[str, list[str]] = {}
    for e in street.events:
        stories.setdefault(e.event_id, []).append(e.phase)
    assert stories
    for phases in stories.values():
        assert phases[0] == "new" and phases[-1] == "end"
        assert phases.count("new") == 1 and phases.count("end") == 1


def test_a_person_entering_the_west_path_gives_one_new_and_one_end_with_the_zone(
    street: Run,
) -> None:
    entering = {e.event_id for e in street.events if "west_path" in e.entered}
    assert entering, "someone walks onto the west path in frames 0-499"
    walker_frame, walker_box = WEST_WALKER[6]  # he is on the path by then
    walker_ids = {tid for tid, b, _ in street.tracks[walker_frame] if iou(b, walker_box) >= 0.3}
    walker_events = {e.event_id for e in street.events if e.track_id in walker_ids}
    assert walker_events & entering, "the man walking west is one of them"
    for event_id in entering:
        story = [e for e in street.events if e.event_id == event_id]
        assert [e.phase for e in story].count("new") == 1
        assert [e.phase for e in story].count("end") == 1
        assert len({e.track_id for e in story}) == 1 and story[0].label == "person"
        assert any(e.zones == ("west_path",) for e in story)


def test_a_privacy_masked_part_of_the_road_yields_no_detections_and_black_snapshots(
    detector: Detector, street: Run, tmp_path: Path,
) -> None:
    def mostly_masked(d: Detection) -> bool:
        return intersection(d.box, ROAD_EAST_PX) >= 0.5 * area(d.box)

    frames = range(0, 200)
    unmasked = [d for d in street.detections if mostly_masked(d)]
    assert unmasked, "without the mask people are detected there"
    store = SnapshotStore(tmp_path)
    run = play(FramePipeline("street", detector, privacy_masks=[ROAD_EAST], snapshots=store),
               frames)
    assert run.detections and not [d for d in run.detections if mostly_masked(d)]
    shots = sorted((tmp_path / "street").glob("*.jpg"))
    assert shots and store.failures == 0
    named = {e.snapshot for e in run.events if e.snapshot}
    assert {f"street/{p.name}" for p in shots} == named
    x1, y1, x2, y2 = (round(v) for v in ROAD_EAST_PX)
    for shot in shots:
        picture = read_jpeg(shot)
        assert picture.shape == (HEIGHT, WIDTH, 3)
        inside = picture[y1 + 6 : y2 - 6, x1 + 6 : x2 - 6]
        # Black, apart from JPEG ringing and the box of an object standing at the mask's edge.
        assert np.percentile(inside, 99) <= 16, shot.name
        assert picture[:, : x1 - 10].mean() > 40  # the rest of the street is there
