"""Delivering a clip the hub asked for: export, sign, pin, upload; run in a child process.

The node's main process never touches video, so a `clip` command is carried out here, in
a process of its own: the window is exported by stream copy, its evidence manifest signed
with the node's key, the footage pinned (so the original segments stay for as long as an
alert's would, and a later dispute can be checked against them), and the clip uploaded
with HTTP PUT. `serve` is the child's main (edge/uplink/clip_requests.py starts it): the
job comes over its stdin, the result, a plain dict, goes back as one JSON object on stdout.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from edge import clock
from edge.record.index import Category, Moment, RecordingIndexError, SegmentIndex
from edge.record.timeline import Reading, SystemClock, Timeline

log = logging.getLogger(__name__)

DAY_S = 86400.0


@dataclass(frozen=True)
class ClipJob:
    """One `clip` command, as the child process needs it (picklable)."""

    request_id: str
    node_id: str
    camera: str
    start: float
    end: float
    upload_url: str
    manifest_url: str | None
    recordings: Path
    identity: Path
    hold_days: float  # how long the segments behind the clip are pinned
    resumable: bool = False  # the upload URL takes resumable PUTs
    segment_s: float = 10.0  # the recorder's segment length: how late the newest footage is
    # The main process's clock state (it alone hears the GPS receiver), as of the request.
    clock_synced: bool = False
    clock_source: str = "none"
    clock_offset_s: float | None = None
    # When the request arrived (wall, monotonic): its window's end is placed through the
    # clock then in force, whatever the clock did while it queued. None: when the export starts.
    asked: tuple[float, float] | None = None


def wait_for_footage(index: SegmentIndex, job: ClipJob, timeline: Timeline, *,
                     sleep: Callable[[float], None] = time.sleep) -> None:
    """Wait until the window's end is on disk: a request may reach to now or past it (an
    alert's after-window), and the segment being written is indexed only when it closes.
    The end is placed in recorded time through the clock in force when the request came,
    and the wait is on the monotonic clock: a step while waiting neither ends it nor draws
    it out. Gives up `2 × segment_s + 5` s after the window's end (a camera gone offline)."""
    asked = _asked(job, timeline)
    wanted = timeline.rec(asked.mono) + (job.end - asked.wall)
    deadline = asked.mono + max(0.0, job.end - asked.wall) + 2 * job.segment_s + 5
    while (left := deadline - timeline.clock.read().mono) > 0:
        newest = index.newest(job.camera)
        if newest is not None and newest.rec_end >= wanted:
            return
        sleep(min(1.0, left))


def _asked(job: ClipJob, timeline: Timeline) -> Reading:
    return Reading(*job.asked) if job.asked is not None else timeline.clock.read()


def deliver(job: ClipJob) -> dict[str, Any]:
    """Export, sign, pin and upload; {"ok": True, "clip": {...}} or {"ok": False, "error"}."""
    # Imported here, in the child: the node imports this module to hand the job over, and
    # must not load PyAV and cryptography for it.
    from contract.evidence.hashing import ClipError, utc_iso
    from contract.evidence.keys import EvidenceKeyError
    from contract.evidence.manifest import ManifestError
    from edge.record.clips import export_clip
    from edge.record.manifest import build_manifest, write_manifest
    from edge.record.signing import evidence_key
    from edge.record.upload import UploadError, upload

    with contextlib.suppress(OSError):
        os.nice(10)  # an export must not slow the camera workers' real-time reading
    out_dir = job.recordings / "exports"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        index = SegmentIndex(job.recordings)
    except (OSError, RecordingIndexError) as e:
        return {"ok": False, "error": f"recordings unavailable: {e}"}
    out = out_dir / f"{job.camera}-{job.request_id}.mp4"
    manifest_path = out.with_suffix(".manifest.json")
    try:
        # Pinned first, so eviction cannot take a segment while it is being read.
        timeline = Timeline(index, SystemClock())
        asked = _asked(job, timeline)
        at = Moment(asked.wall, timeline.rec(asked.mono), timeline.boot)
        index.pin(job.camera, job.start, job.end, Category.ALERT, f"request {job.request_id}",
                  now=at, expires=at.rec + job.hold_days * DAY_S)
        wait_for_footage(index, job, timeline)
        clip = export_clip(index, job.camera, job.start, job.end, out)
        manifest = build_manifest(clip, node_id=job.node_id, key=evidence_key(job.identity),
                                  clock_synced=job.clock_synced or clock.clock_synced(),
                                  clock_source=job.clock_source,
                                  clock_offset_s=job.clock_offset_s, created=time.time())
        write_manifest(manifest, manifest_path)
        sent = upload(clip.path, job.upload_url, content_type="video/mp4",
                      resumable=job.resumable)
        if job.manifest_url:
            upload(manifest_path, job.manifest_url, content_type="application/json",
                   resumable=job.resumable)
    except (ClipError, UploadError, RecordingIndexError, ManifestError, EvidenceKeyError,
            OSError, ValueError) as e:
        log.error("clip request %s (camera %s) failed: %s", job.request_id, job.camera, e)
        return {"ok": False, "error": str(e)}
    finally:
        index.close()
        # The clip can be exported again from the pinned segments; keep the card for footage.
        for path in (out, manifest_path):
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
    if sent.sha256 != clip.sha256:
        return {"ok": False, "error": "the clip changed on disk while it was uploaded"}
    return {"ok": True, "clip": {
        "bytes": clip.bytes, "sha256": clip.sha256, "start": utc_iso(clip.start),
        "end": utc_iso(clip.end), "gaps": [[utc_iso(a), utc_iso(b)] for a, b in clip.gaps],
        "uploaded_to": sent.url, "manifest": manifest,
    }}


def serve() -> None:
    """The export child's main, its parent-death signal already set: (job, log level) from
    stdin, `deliver`'s result as JSON on stdout. SIGTERM (the node stopping) ends the export
    through its `finally`, so no half-written clip is left in `exports/`."""
    result_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever else writes to stdout goes to the log, not into the result
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the node, which stops us
    # From the node, through a pipe only it held.
    job, level = pickle.load(sys.stdin.buffer)  # noqa: S301
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        result = deliver(job)
    except Exception as e:  # a bug or a fault not foreseen: the hub still gets a reason
        log.exception("clip request %s (camera %s) failed", job.request_id, job.camera)
        result = {"ok": False, "error": f"the export process failed: {e!r}"}
    with result_out:
        json.dump(result, result_out)


def _stop(sig: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + sig)  # the node says why; exit as the signal would have
