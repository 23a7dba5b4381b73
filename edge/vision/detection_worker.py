"""The detection worker process: frames from the ring → the vision pipeline → events.

It loads the detector once, then takes frames from the camera's ring (the newest one; the
ones it had no time for count as skipped), runs the per-frame pipeline (masks, motion,
regions, detector, tracker, zones, events) and sends the events and its stats to the
supervisor. When the camera goes quiet for a while, open tracks are ended, so every `new`
gets its `end` even if the camera dies.
"""

from __future__ import annotations

import logging
import statistics
import time
from multiprocessing.connection import Connection

from edge.detectors.base import Image
from edge.vision.events import VisionEvent
from edge.vision.framebus import FrameRing
from edge.vision.pipeline import FramePipeline, build_pipeline
from edge.vision.worker_common import (
    Beat,
    DetectionJob,
    WorkerLink,
    on_sigterm,
    start_worker,
)

log = logging.getLogger(__name__)

STATS_EVERY_S = 1.0
QUIET_ENDS_TRACKS_S = 5.0  # no frame this long: the camera is gone, close the open events




class _Stats:
    def __init__(self) -> None:
        self.processed = 0
        self.skipped = 0
        self.inferences = 0
        self.events = 0
        self.invoke_ms: list[float] = []

    def take(self) -> dict[str, float]:
        ms = statistics.median(self.invoke_ms) if self.invoke_ms else 0.0
        self.invoke_ms.clear()
        return {
            "at": time.monotonic(), "processed": self.processed, "skipped": self.skipped,
            "inferences": self.inferences, "events": self.events, "inference_ms": ms,
        }


def run(job: DetectionJob, conn: Connection, beat: Beat) -> None:
    """Process entry point (from `worker_common.serve`)."""
    name = f"detector {job.camera.name}"
    start_worker(name, job.nice, job.log_level)
    link = WorkerLink(conn, beat, name)
    on_sigterm(link)
    link.alive()
    pipeline = build_pipeline(job.camera, job.detector, job.snapshot_dir)
    ring = FrameRing.attach(job.ring_name)
    stats = _Stats()
    log.info("ready on ring %s", job.ring_name)
    next_stats = time.monotonic() + STATS_EVERY_S
    last_frame_t: float | None = None
    last_frame_at = time.monotonic()
    try:
        while not link.stopping.is_set():
            link.alive()
            frame = ring.read(timeout_s=0.25)
            now = time.monotonic()
            if frame is not None:
                last_frame_at = now
                last_frame_t = frame.pts_s if frame.pts_s is not None else frame.captured_at
                _process(pipeline, frame.image, last_frame_t, link, stats)
                stats.processed += 1
                stats.skipped += frame.skipped
            elif last_frame_t is not None and now - last_frame_at > QUIET_ENDS_TRACKS_S:
                _send_events(pipeline.close(last_frame_t), link, stats)
                last_frame_t = None
            if now >= next_stats:
                next_stats = now + STATS_EVERY_S
                link.send("stats", stats.take())
    finally:
        if last_frame_t is not None:
            _send_events(pipeline.close(last_frame_t), link, stats)
        ring.close()


def _process(
    pipeline: FramePipeline, image: Image, t: float, link: WorkerLink, stats: _Stats
) -> None:
    result = pipeline.process(image, t)
    stats.inferences += result.inferences
    if result.inferences:
        stats.invoke_ms.append(result.detector_ms / result.inferences)
    _send_events(result.events, link, stats)


def _send_events(events: list[VisionEvent], link: WorkerLink, stats: _Stats) -> None:
    for event in events:
        stats.events += 1
        link.send("event", event)
