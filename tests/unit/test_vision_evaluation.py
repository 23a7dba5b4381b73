"""The gate's measurement: person-track recall against the every-frame baseline counts what
the module docstring says it counts."""

from __future__ import annotations

from devkit.evaluation import Recording, TrackRecord, compare, measure_gating
from edge.detectors.base import Box
from tests.support.vision_scenes import ColourDetector, scene

FPS = 10.0


def walk(track_id: int, frames: range, x0: float, label: str = "person",
         dx: float = 5.0) -> TrackRecord:
    rec = TrackRecord(track_id, label=label)
    for i in frames:
        x = x0 + dx * (i - frames.start)
        rec.seen[i] = ((x, 100.0, x + 30, 180.0), label)
        rec.detected.append(i)
    return rec


def recording(*tracks: TrackRecord, frames: int = 100, inferences: int = 100) -> Recording:
    return Recording(frames, inferences, 0.0, 0.0, {t.track_id: t for t in tracks})


def test_a_track_followed_for_most_of_its_frames_is_recalled_and_one_lost_early_is_not() -> None:
    baseline = recording(walk(1, range(0, 40), 0.0), walk(2, range(0, 40), 400.0))
    followed = walk(7, range(10, 40), 50.0)  # joins 1 s late: covered 30 of 40 frames
    glimpsed = walk(8, range(0, 12), 400.0)  # 12 of 40 frames
    report = compare(baseline, recording(followed, glimpsed, inferences=25), FPS)
    assert report.person_tracks == 2 and report.recalled == 1 and report.missed == (2,)
    assert report.recall == 0.5
    assert report.mean_coverage == (30 / 40 + 12 / 40) / 2
    assert report.inferences_per_frame == 0.25 and report.baseline_inferences_per_frame == 1.0


def test_short_tracks_and_other_labels_are_not_counted() -> None:
    baseline = recording(walk(1, range(0, 9), 0.0), walk(2, range(0, 40), 0.0, label="car"))
    report = compare(baseline, recording(), FPS)
    assert report.person_tracks == 0 and report.recall == 1.0


def test_a_gated_box_must_overlap_enough_on_the_same_frame() -> None:
    baseline = recording(walk(1, range(0, 20), 0.0))
    beside: Box = (40.0, 100.0, 70.0, 180.0)  # always next to, never on, the walker
    far = TrackRecord(5, label="person", seen={i: (beside, "person") for i in range(20)})
    assert compare(baseline, recording(far), FPS).recalled == 0
    late = walk(6, range(0, 20), 0.0)
    late.seen = {i + 15: v for i, v in late.seen.items()}  # right place, wrong time
    assert compare(baseline, recording(late), FPS).recalled == 0


def test_measuring_a_synthetic_walk_finds_the_walker_for_fewer_inferences() -> None:
    def frames():  # type: ignore[no-untyped-def]
        for i in range(80):
            x = 20.0 + 7 * i
            yield scene([((x, 200.0, x + 24, 264.0), "person"), ((40, 380, 160, 440), "car")])

    report, baseline = measure_gating(ColourDetector(), frames, fps=FPS)
    assert baseline.inferences == 80
    assert report.person_tracks == 1 and report.recall == 1.0
    assert report.mean_coverage > 0.9
    assert report.inferences_per_frame < 0.4
    assert "person-track recall" in report.table()
