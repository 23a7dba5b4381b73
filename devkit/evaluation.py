"""Measuring the detection gate: inferences the gated pipeline spends, and the person tracks it
keeps, against the every-frame baseline run on the same frames with the same detector.

Person-track recall, as computed by :func:`compare`:

- Baseline: ``FramePipeline(every_frame=True)``: the detector on the whole of every frame,
  the same tracker settings.
- A baseline track is counted when it was confirmed, its label is ``person``, and it was
  detected over at least ``min_duration_s`` (first to last detection).
- Its frames are the frames on which the baseline detector matched it (its coasting
  predictions are not evidence of anything).
- On each of those frames it is covered when the gated pipeline has a confirmed person
  track there whose current box (detected or predicted: what the node believes at that
  moment) overlaps it with IoU ≥ ``match_iou`` (0.3).
- The track is recalled when covered on at least ``min_coverage`` (half) of its frames;
  recall = recalled / counted. Mean coverage is reported alongside.

Frames are given as a callable that yields them afresh, since both runs need them and a
clip held in memory is large. The project's evaluation frames are vtest.avi 0-499
(:func:`vtest_frames`); frames 500-794 calibrate the int8 model and are not evaluated on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np

from edge.detectors.base import Box, Detector, Image
from edge.vision.events import DEFAULT_LABELS
from edge.vision.gating import GatingPolicy
from edge.vision.geometry import iou
from edge.vision.pipeline import FramePipeline
from edge.vision.tracker import TrackerSettings

EVALUATION_FRAMES = range(0, 500)  # of vtest.avi; 500-794 are int8 calibration frames


@dataclass(slots=True)
class TrackRecord:
    """One track as a run saw it: per frame while confirmed, its box and label."""

    track_id: int
    seen: dict[int, tuple[Box, str]] = field(default_factory=dict)
    detected: list[int] = field(default_factory=list)  # frames a detection matched it
    label: str = ""  # the label it had last


@dataclass(frozen=True, slots=True)
class Recording:
    """What one pipeline did over a clip."""

    frames: int
    inferences: int
    detector_ms: float
    total_ms: float
    tracks: dict[int, TrackRecord]


@dataclass(frozen=True, slots=True)
class GatingReport:
    """The gate against the baseline on one clip; see the module docstring for the metric."""

    frames: int
    inferences_per_frame: float
    baseline_inferences_per_frame: float
    person_tracks: int
    recalled: int
    recall: float
    mean_coverage: float
    pipeline_ms_per_frame: float  # gated pipeline, detector time excluded
    detector_ms_per_inference: float
    missed: tuple[int, ...]  # baseline track ids not recalled

    def table(self) -> str:
        rows = [
            ("frames", f"{self.frames}"),
            ("inferences / frame (gated)", f"{self.inferences_per_frame:.3f}"),
            ("inferences / frame (baseline)", f"{self.baseline_inferences_per_frame:.3f}"),
            ("person tracks (baseline, >= 1 s)", f"{self.person_tracks}"),
            ("person-track recall", f"{self.recall:.3f} ({self.recalled}/{self.person_tracks})"),
            ("mean coverage of baseline frames", f"{self.mean_coverage:.3f}"),
            ("pipeline ms / frame excl. detector", f"{self.pipeline_ms_per_frame:.2f}"),
            ("detector ms / inference", f"{self.detector_ms_per_inference:.1f}"),
        ]
        return "\n".join(f"{name:<36} {value}" for name, value in rows)


def record(pipeline: FramePipeline, frames: Iterable[Image], fps: float) -> Recording:
    """Run `pipeline` over `frames` (at `fps`) and keep what each confirmed track did."""
    tracks: dict[int, TrackRecord] = {}
    count = inferences = 0
    detector_ms = total_ms = 0.0
    for index, image in enumerate(frames):
        t = index / fps
        started = time.perf_counter()
        result = pipeline.process(image, t)
        total_ms += (time.perf_counter() - started) * 1000
        detector_ms += result.detector_ms
        inferences += result.inferences
        count += 1
        for track in pipeline.tracks:
            if not track.confirmed:
                continue
            rec = tracks.setdefault(track.id, TrackRecord(track.id))
            rec.seen[index] = (track.box, track.label)
            rec.label = track.label
            if track.last_seen == t:
                rec.detected.append(index)
    pipeline.close(count / fps)
    return Recording(count, inferences, detector_ms, total_ms, tracks)


def compare(
    baseline: Recording,
    gated: Recording,
    fps: float,
    *,
    label: str = "person",
    min_duration_s: float = 1.0,
    match_iou: float = 0.3,
    min_coverage: float = 0.5,
) -> GatingReport:
    """Person-track recall of `gated` against `baseline` (see the module docstring)."""
    by_frame: dict[int, list[Box]] = {}
    for rec in gated.tracks.values():
        for index, (box, seen_as) in rec.seen.items():
            if seen_as == label:
                by_frame.setdefault(index, []).append(box)
    counted = [
        rec for rec in baseline.tracks.values()
        if rec.label == label and rec.detected
        and (rec.detected[-1] - rec.detected[0]) / fps >= min_duration_s
    ]
    coverages: dict[int, float] = {}
    for rec in counted:
        covered = sum(
            any(iou(rec.seen[i][0], box) >= match_iou for box in by_frame.get(i, []))
            for i in rec.detected
        )
        coverages[rec.track_id] = covered / len(rec.detected)
    recalled = [tid for tid, c in coverages.items() if c >= min_coverage]
    frames = max(gated.frames, 1)
    return GatingReport(
        frames=gated.frames,
        inferences_per_frame=gated.inferences / frames,
        baseline_inferences_per_frame=baseline.inferences / max(baseline.frames, 1),
        person_tracks=len(counted),
        recalled=len(recalled),
        recall=len(recalled) / len(counted) if counted else 1.0,
        mean_coverage=sum(coverages.values()) / len(coverages) if coverages else 1.0,
        pipeline_ms_per_frame=(gated.total_ms - gated.detector_ms) / frames,
        detector_ms_per_inference=gated.detector_ms / max(gated.inferences, 1),
        missed=tuple(sorted(set(coverages) - set(recalled))),
    )


def measure_gating(
    detector: Detector,
    frames: Callable[[], Iterable[Image]],
    *,
    fps: float = 10.0,
    gating: GatingPolicy | None = None,
    tracking: TrackerSettings | None = None,
    labels: Iterable[str] = DEFAULT_LABELS,
    baseline: Recording | None = None,
) -> tuple[GatingReport, Recording]:
    """Run the baseline (unless given, e.g. from an earlier call) and the gated pipeline over
    `frames()`; the report and the baseline recording, for reuse while tuning."""
    labels = list(labels)
    if baseline is None:
        reference = FramePipeline("evaluation", detector, labels=labels, tracking=tracking,
                                  every_frame=True)
        baseline = record(reference, frames(), fps)
    gated_pipeline = FramePipeline("evaluation", detector, labels=labels, tracking=tracking,
                                   gating=gating or GatingPolicy())
    gated = record(gated_pipeline, frames(), fps)
    return compare(baseline, gated, fps), baseline


def footage_frames(path: Path, frames: range = EVALUATION_FRAMES) -> Iterator[Image]:
    """BGR frames `frames` (a range, step allowed) of a video file, decoded with PyAV."""
    import av

    with av.open(str(path)) as container:
        decoded = container.decode(video=0)
        for index, frame in enumerate(islice(decoded, frames.stop)):
            if index in frames:
                yield np.ascontiguousarray(frame.to_ndarray(format="bgr24"), dtype=np.uint8)


def vtest_frames(frames: range = EVALUATION_FRAMES) -> Iterator[Image]:
    """Frames of the project's sample footage (fetched and verified on first use)."""
    from devkit.demo.footage import vtest_path

    return footage_frames(vtest_path(), frames)
