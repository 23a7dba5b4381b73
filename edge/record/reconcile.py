"""Start-up check of the recordings folder against its index, after whatever stopped us.

A power cut or `kill -9` leaves at most one file per camera without an index row: the
segment being written. Its torn tail is cut off at the start of its last packet (which
may be incomplete); what remains is indexed if it holds a keyframe, else deleted. Rows
whose file has gone (deleted by eviction just before a crash, or by hand) are dropped. An
index never names a file that is not whole. A repaired segment keeps the wall-time label
its name carries; its recorded time is taken as ending now (when it was recorded is lost
with the process), so it is never aged early and sorts after everything recorded before.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import av
import av.error

from edge.record.index import SegmentIndex
from edge.record.segmenter import SEGMENT_SUFFIX, start_of
from edge.record.timeline import SystemClock, Timeline

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Reconciled:
    repaired: list[str]  # torn segments trimmed and indexed
    dropped: list[str]  # files with nothing playable, deleted
    missing: list[str]  # index rows whose file was gone, forgotten


def reconcile(index: SegmentIndex, *, camera: str | None = None,
              timeline: Timeline | None = None) -> Reconciled:
    """Make the index and the files (of one camera, or all) agree; returns what changed."""
    timeline = timeline or Timeline(index, SystemClock())
    known = index.paths()
    repaired: list[str] = []
    dropped: list[str] = []
    top = index.root / camera if camera is not None else index.root
    for path in sorted(top.rglob(f"*{SEGMENT_SUFFIX}")):
        rel = path.relative_to(index.root).as_posix()
        if rel in known:
            continue
        start = start_of(rel)
        found = _repair(path) if start is not None else None
        if found is None or start is None:
            log.warning("recording %s: nothing playable in it (torn at its first frame); "
                        "deleted", rel)
            path.unlink(missing_ok=True)
            dropped.append(rel)
            continue
        duration_s, size, sha256 = found
        now = timeline.now()
        index.add(rel.split("/")[0], start, start + duration_s, rel, size, sha256,
                  rec=(now.rec - duration_s, now.rec), boot=now.boot)
        log.warning("recording %s: cut short (power cut or crash); trimmed to %.1f s and kept",
                    rel, duration_s)
        repaired.append(rel)
    gone = [s for s in index.segments(camera) if not index.file(s).exists()]
    if gone:
        index.remove(s.id for s in gone)
        log.warning("recording index: %d segment(s) had no file; forgotten", len(gone))
    missing = [s.path for s in gone]
    return Reconciled(repaired, dropped, missing)


def _repair(path: Path) -> tuple[float, int, str] | None:
    """Trim a torn segment to its complete packets: (duration s, bytes, sha256) or None."""
    try:
        with av.open(str(path), "r", format="mpegts") as container:
            stream = container.streams.video[0]
            packets = [(p.pos, p.pts, p.dts, p.duration, p.is_keyframe)
                       for p in container.demux(stream) if p.size]
            time_base = stream.time_base
    except (av.error.FFmpegError, IndexError, OSError):
        return None
    # The last packet may be missing bytes; the ones before it are complete.
    keep = packets[:-1]
    if not keep or not keep[0][4] or time_base is None or packets[-1][0] is None:
        return None
    cut = packets[-1][0]
    with open(path, "r+b") as f:
        f.truncate(cut)
        f.flush()
        os.fsync(f.fileno())
    times = [p[1] if p[1] is not None else p[2] for p in keep]
    stamped = [t for t in times if t is not None]
    if not stamped:
        return None
    tick = keep[-1][3] or (stamped[-1] - stamped[0]) // max(1, len(stamped) - 1)
    duration_s = float((max(stamped) + tick - stamped[0]) * time_base)
    sha = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
            size += len(chunk)
    return duration_s, size, sha.hexdigest()
