"""Vision for one camera: privacy masks, motion, regions, detection, tracks, zones, events
and snapshots, composed frame by frame by :class:`FramePipeline`."""

from edge.vision.events import DEFAULT_LABELS, VisionEvent
from edge.vision.gating import GatingPolicy
from edge.vision.pipeline import FramePipeline, FrameResult
from edge.vision.snapshots import SnapshotStore
from edge.vision.tracker import TrackerSettings
from edge.vision.zones import Zone

__all__ = [
    "DEFAULT_LABELS",
    "FramePipeline",
    "FrameResult",
    "GatingPolicy",
    "SnapshotStore",
    "TrackerSettings",
    "VisionEvent",
    "Zone",
]
