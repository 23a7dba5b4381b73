"""The whole per-frame pipeline on synthetic street scenes: what the gate spends, what the
hub hears, what the snapshots show."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from edge.detectors.base import Box
from edge.vision.gating import GatingPolicy
from edge.vision.pipeline import FramePipeline, FrameResult
from edge.vision.regions import full_frame
from edge.vision.snapshots import SnapshotStore
from edge.vision.zones import Zone
from tests.support.vision_scenes import SIZE, ColourDetector, read_jpeg, scene

PARKED: Box = (40.0, 380.0, 160.0, 440.0)
GARDEN = [(0.7, 0.0), (1.0, 0.0), (1.0, 0.6), (0.7, 0.6)]  # a private garden, top right


def walker(frame: int) -> Box:
    x = 20.0 + 6 * frame  # crosses the frame left to right in ~100 frames
    return (x, 200.0, x + 24, 264.0)


def run(pipeline: FramePipeline, frames: int, actors: Callable[[int], list[tuple[Box, str]]]
        ) -> list[FrameResult]:
    """Feed `frames` synthetic frames at 10 fps; `actors(i)` says who is where on frame i."""
    return [pipeline.process(scene(actors(i)), i / 10) for i in range(frames)]


def test_a_still_street_costs_one_whole_frame_scan_per_refresh() -> None:
    detector = ColourDetector()
    pipeline = FramePipeline("street", detector, gating=GatingPolicy(refresh_s=5.0))
    results = run(pipeline, 200, lambda i: [(PARKED, "car")])  # 20 s
    # t = 0 finds it, a look at t = 0.2 confirms it (whole, as it was found), then a refresh
    # 5 s after each whole-frame scan keeps it.
    assert sum(r.inferences for r in results) == detector.calls == 5
    assert [i for i, r in enumerate(results) if r.inferences] == [0, 2, 52, 102, 152]
    assert detector.shapes == [SIZE] * 5
    events = [e for r in results for e in r.events] + pipeline.close(20.0)
    assert [(e.phase, e.label) for e in events] == [("new", "car"), ("update", "car"),
                                                    ("end", "car")]
    assert events[1].stationary  # the only change worth saying: it does not move


def test_a_walker_costs_far_fewer_inferences_than_every_frame_and_keeps_one_id() -> None:
    gated, every = ColourDetector(), ColourDetector()
    crossing = [Zone("crossing", [(0.45, 0.0), (0.55, 0.0), (0.55, 1.0), (0.45, 1.0)])]
    pipelines = [FramePipeline("street", d, zones=crossing, every_frame=(d is every))
                 for d in (gated, every)]
    for pipeline in pipelines:
        results = run(pipeline, 110, lambda i: [(walker(i), "person")] if i < 100 else [])
        events = [e for r in results for e in r.events] + pipeline.close(11.0)
        assert [e.phase for e in events] == ["new", "update", "update", "end"]
        assert len({e.track_id for e in events}) == 1
        assert events[1].entered == ("crossing",) and events[2].left == ("crossing",)
    assert every.calls == 110 and set(every.shapes) == {SIZE}
    assert gated.calls <= 0.35 * every.calls
    assert (300, 300) in gated.shapes  # crops at native resolution around the walker


def test_regions_are_where_the_walker_is() -> None:
    pipeline = FramePipeline("street", ColourDetector(), gating=GatingPolicy(refresh_s=100))
    results = run(pipeline, 40, lambda i: [(walker(i), "person")])
    scanned = [(i, r.regions) for i, r in enumerate(results) if r.regions]
    # Found (t = 0) and confirmed (a look at t = 0.2) in the whole frame, then swept in crops.
    assert [i for i, _ in scanned[:3]] == [0, 2, 5]
    for i, regions in scanned[2:]:
        assert regions != [full_frame(SIZE)]
        w = walker(i)
        assert any(x1 <= w[0] and w[2] <= x2 and y1 <= w[1] and w[3] <= y2
                   for x1, y1, x2, y2 in regions)


def test_nothing_is_detected_inside_a_privacy_mask_and_snapshots_show_it_black(
    tmp_path: Path,
) -> None:
    store = SnapshotStore(tmp_path / "snapshots")
    pipeline = FramePipeline("street", ColourDetector(), privacy_masks=[GARDEN],
                             snapshots=store, every_frame=True)
    in_garden: Box = (560.0, 40.0, 590.0, 100.0)  # x 560.. is inside 0.7*640 = 448..640
    results = run(pipeline, 30, lambda i: [(in_garden, "person"), (walker(i), "person")])
    detections = [d for r in results for d in r.detections]
    assert detections and all(d.box[2] <= 448 for d in detections)
    [new] = [e for r in results for e in r.events if e.phase == "new"]
    assert new.snapshot == f"street/{new.event_id}.jpg"
    picture = read_jpeg(tmp_path / "snapshots" / new.snapshot)
    assert picture.shape[:2] == (SIZE[1], SIZE[0])
    garden = picture[5:280, 455:635]
    assert garden.max() <= 12  # black, give or take JPEG ringing
    assert picture[:, :440].mean() > 40  # the rest of the street is there


def test_a_snapshot_that_cannot_be_written_is_counted_and_events_still_flow(
    tmp_path: Path,
) -> None:
    blocked = tmp_path / "snapshots"
    blocked.write_text("a file where the snapshot directory should be")
    store = SnapshotStore(blocked)
    pipeline = FramePipeline("street", ColourDetector(), snapshots=store, every_frame=True)
    results = run(pipeline, 5, lambda i: [(walker(i), "person")])
    [new] = [e for r in results for e in r.events]
    assert new.phase == "new" and new.snapshot is None and store.failures == 1


def test_large_snapshots_are_scaled_to_the_size_bound(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, max_side=320)
    image = np.full((1080, 1920, 3), 90, dtype=np.uint8)
    path = store.write("gate", "e1", image, (100.0, 100.0, 300.0, 500.0))
    assert path == tmp_path / "gate" / "e1.jpg"
    assert path is not None and read_jpeg(path).shape[:2] == (180, 320)
    assert [p.name for p in (tmp_path / "gate").iterdir()] == ["e1.jpg"]  # no partial left


def test_a_resolution_change_ends_what_was_tracked_and_starts_afresh() -> None:
    pipeline = FramePipeline("street", ColourDetector(), every_frame=True)
    run(pipeline, 5, lambda i: [(walker(i), "person")])
    result = pipeline.process(scene([(walker(5), "person")], (320, 240)), 0.5)
    assert [e.phase for e in result.events] == ["end"]
    assert pipeline.close(0.6) == []
