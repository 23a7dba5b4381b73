"""The per-frame vision pipeline of one camera, in one process:

frame → privacy mask → motion → gate (regions or nothing) → detector → tracker → zones →
events (+ snapshots). The worker that owns the camera feeds it frames with their time; it
returns the events to publish. Pure logic: no processes, queues or MQTT here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

from edge import clock
from edge.config.vision import CameraSection, DetectorSection
from edge.detectors import create
from edge.detectors.base import Detection, Detector, Image
from edge.vision.events import DEFAULT_LABELS, EventLifecycle, VisionEvent
from edge.vision.gating import DetectionGate, GatingPolicy
from edge.vision.geometry import Size
from edge.vision.masks import PrivacyMask
from edge.vision.motion import MotionDetector
from edge.vision.polygons import Polygon
from edge.vision.regions import Region, detect_in_regions
from edge.vision.snapshots import SnapshotStore
from edge.vision.tracker import Track, Tracker, TrackerSettings
from edge.vision.zones import Zone, ZoneMap


@dataclass(frozen=True, slots=True)
class FrameResult:
    """What one frame produced and cost."""

    events: list[VisionEvent]
    inferences: int  # detector invocations on this frame
    detector_ms: float  # time spent in the detector on this frame
    motion_fraction: float  # share of the frame that moved (0..1)
    regions: list[Region]  # where the detector ran (empty: it did not)
    detections: list[Detection] = field(default_factory=list)  # frame pixels, after merging


@dataclass(slots=True)
class _Scene:
    """Everything that depends on the frame size, built once per size."""

    size: Size
    privacy: PrivacyMask
    motion: MotionDetector
    gate: DetectionGate
    tracker: Tracker
    zones: ZoneMap
    lifecycle: EventLifecycle


class FramePipeline:
    """Turns the frames of one camera into vision events.

    Polygons (privacy masks, motion masks, zones) are normalised (0..1 of the frame) and are
    turned into pixels when the first frame of a size arrives. `labels`: the objects tracked
    and reported. `wall_time` maps the frame time `t` to the wall clock on events; by default
    the first frame is "now" and later ones follow by their `t`. `every_frame=True` runs
    the detector on the whole of every frame (the reference the gated mode is measured by).
    """

    def __init__(
        self,
        camera: str,
        detector: Detector,
        *,
        privacy_masks: Sequence[Polygon] = (),
        motion_masks: Sequence[Polygon] = (),
        zones: Sequence[Zone] = (),
        labels: Iterable[str] = DEFAULT_LABELS,
        gating: GatingPolicy | None = None,
        tracking: TrackerSettings | None = None,
        update_interval_s: float | None = 30.0,
        snapshots: SnapshotStore | None = None,
        wall_time: Callable[[float], datetime] | None = None,
        every_frame: bool = False,
    ) -> None:
        self.camera = camera
        self.detector = detector
        self.labels = frozenset(labels)
        self.snapshots = snapshots
        self._privacy_masks = list(privacy_masks)
        self._motion_masks = list(motion_masks)
        self._zones = list(zones)
        gating = gating or GatingPolicy()
        if every_frame and not gating.every_frame:
            gating = replace(gating, every_frame=True)
        self.gating = gating
        self.tracking = tracking or TrackerSettings()
        self.update_interval_s = update_interval_s
        self._wall_time = wall_time
        self._scene: _Scene | None = None
        self._snapshot_names: dict[str, str] = {}  # event id -> snapshot file, while open

    @property
    def tracks(self) -> list[Track]:
        """The live tracks (confirmed or not) after the last frame."""
        return list(self._scene.tracker.tracks) if self._scene else []

    def process(self, image: Image, t: float) -> FrameResult:
        """Run one BGR frame taken at time `t` (seconds, increasing). Blanks privacy masks in
        `image` in place."""
        h, w = image.shape[:2]
        events: list[VisionEvent] = []
        if self._scene is None or self._scene.size != (w, h):
            # A new stream, or the camera changed resolution: tracks cannot be followed across.
            events += self.close(t)
            self._scene = self._build((w, h), t)
        scene = self._scene
        scene.privacy.apply(image)
        motion = scene.motion.detect(image)
        tracks = scene.tracker.predict(t)
        scan = scene.gate.plan(t, motion, tracks)
        inferences, spent = 0, 0.0
        detections: list[Detection] = []
        regions: list[Region] = []
        if scan is None:
            removed = scene.tracker.coast(t)
        else:
            found = detect_in_regions(self.detector, image, scan.regions)
            detections = [d for d in found.detections if d.label in self.labels]
            inferences, spent, regions = found.inferences, found.detector_ms, scan.regions
            removed = scene.tracker.update(detections, t, None if scan.whole_frame else regions)
        for track in removed:
            scene.zones.forget(track.id)
        live = scene.tracker.tracks
        statuses = scene.zones.update(((tr.id, tr.box) for tr in live), t)
        events += scene.lifecycle.update(live, statuses, removed, t)
        events = self._snapshot(image, events, live)
        return FrameResult(events, inferences, spent, motion.area_fraction, regions, detections)

    def close(self, t: float) -> list[VisionEvent]:
        """The stream ended: `end` for every open event. A later frame starts afresh (new
        background, new tracks), as after a camera restart."""
        if self._scene is None:
            return []
        ended = self._scene.lifecycle.close(self._scene.tracker.tracks, t)
        self._scene = None
        return self._snapshot_names_of(ended)

    def _snapshot_names_of(self, events: list[VisionEvent]) -> list[VisionEvent]:
        named = []
        for event in events:
            name = self._snapshot_names.pop(event.event_id, None)
            named.append(replace(event, snapshot=name) if name else event)
        return named

    def _build(self, size: Size, t: float) -> _Scene:
        wall_time = self._wall_time
        if wall_time is None:
            # Frame times may restart with the stream: anchor them to the clock again.
            anchor = clock.now() - timedelta(seconds=t)

            def wall_time(s: float) -> datetime:
                return anchor + timedelta(seconds=s)

        return _Scene(
            size=size,
            privacy=PrivacyMask(self._privacy_masks, size),
            motion=MotionDetector(size, masks=self._motion_masks),
            gate=DetectionGate(self.gating, size, self.detector.input_size),
            tracker=Tracker(size, self.tracking),
            zones=ZoneMap(self._zones, size),
            lifecycle=EventLifecycle(
                self.camera, size, wall_time, labels=self.labels,
                update_interval_s=self.update_interval_s,
            ),
        )

    def _snapshot(
        self, image: Image, events: list[VisionEvent], live: list[Track]
    ) -> list[VisionEvent]:
        """Write a snapshot for each `new` event; every phase of an event names its file."""
        if self.snapshots is None:
            return events
        boxes = {tr.id: tr.box for tr in live}
        named: list[VisionEvent] = []
        for event in events:
            if event.phase == "new" and event.track_id in boxes:
                written = self.snapshots.write(
                    self.camera, event.event_id, image, boxes[event.track_id],
                    caption=f"{event.label} {event.score:.2f}",
                )
                if written is not None:
                    self._snapshot_names[event.event_id] = f"{self.camera}/{written.name}"
            name = self._snapshot_names.get(event.event_id)
            if event.phase == "end":
                self._snapshot_names.pop(event.event_id, None)
            named.append(replace(event, snapshot=name) if name else event)
        return named


def build_pipeline(
    camera: CameraSection, detector: DetectorSection, snapshot_dir: Path | None
) -> FramePipeline:
    """The pipeline a camera's config describes, with its detector loaded."""
    import edge.detectors.tflite_cpu  # noqa: F401  (registers the "tflite" detector type)

    model = create(
        detector.type, model=detector.model, threads=detector.threads,
        score_threshold=camera.min_score, labels=camera.labels,
    )
    return FramePipeline(
        camera.name,
        model,
        privacy_masks=camera.privacy_masks,
        motion_masks=camera.motion_masks,
        zones=[Zone(z.name, z.polygon, z.loiter_s) for z in camera.zones],
        labels=camera.labels,
        snapshots=SnapshotStore(snapshot_dir) if snapshot_dir is not None else None,
        every_frame=camera.every_frame,
    )
