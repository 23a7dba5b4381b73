"""Clips: one camera's footage over a time window, exported from its segments as one MP4.

The video is stream-copied, never decoded, so a clip holds exactly the pictures the camera
sent. It starts on the last keyframe at or before the window's start (at most one GOP early:
a player needs that keyframe) and ends with the last picture shown before the window's end
(with B-frames, also the reference pictures that one needs: a few frames more).
Each segment is placed on the clip's timeline by its wall-clock start, so a camera that
restarted (its timestamps jump) or a hole in the recordings stays where it happened; the
holes are listed in `Clip.gaps`. A segment whose file no longer matches the hash it was
indexed with is refused: a node never exports footage changed since it was recorded.

The window is in wall time as the footage is labelled: each segment by the clock in force
when it was recorded. Segments are taken in the order they were recorded. Where the clock
was stepped between two of them (their labels moved against their recorded time), the
footage after the step follows the footage before it directly on the clip's timeline, and
`Clip.clock_steps` says where and by how much. After a step back, one window can name two
stretches of footage: both are in the clip, the earlier recorded first.

Every packet of the finished file is read back once to hash what each segment put in the
clip (`ClipPart.sha256`, in the form the MP4 holds: the muxer rewrites Annex B start codes
to length prefixes); the evidence manifest signs these.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.error
from av.container import InputContainer, OutputContainer
from av.packet import Packet
from av.video.stream import VideoStream

from contract.evidence.hashing import (
    ClipError,
    file_sha256,
    part_hashes,
    utc_iso,
    video_packets,
    why,
)
from drivers.storage import replace_synced
from edge.record.index import Segment, SegmentIndex
from edge.record.timeline import STEP_S

GAP_S = 0.1  # footage missing between two segments for longer than this is a gap
_QUICK_OPEN = {"probesize": "32", "analyzeduration": "0"}
_EPS_S = 1e-6  # float rounding of wall times (~2e-7 s today): a frame at `end` is not before it


@dataclass(frozen=True, slots=True)
class ClipPart:
    """What one segment put in a clip: packets [first, first + packets) of the clip's video."""

    segment: Segment
    first: int
    packets: int
    sha256: str  # of each packet as read back from the clip: >qq pts, dts, then its bytes


@dataclass(frozen=True, slots=True)
class Clip:
    """An exported MP4 and what it covers (unix seconds, wall clock)."""

    path: Path
    camera: str
    requested: tuple[float, float]
    start: float  # wall time of the first picture (a keyframe, at most one GOP early)
    end: float  # when the last picture (shown before the requested end) ends
    bytes: int
    sha256: str
    parts: list[ClipPart]
    gaps: list[tuple[float, float]]  # parts of the requested window with no footage
    # (segment, seconds): the clock was stepped by that much just before that segment
    clock_steps: list[tuple[str, float]]


def export_clip(index: SegmentIndex, camera: str, start: float, end: float,
                out: Path) -> Clip:
    """Write the camera's footage of [start, end) to `out` (MP4, moov first) and describe it.

    The file appears under its name only when it is complete and synced.
    """
    if not end > start:
        raise ClipError(f"the clip's end ({utc_iso(end)}) must be after its start "
                        f"({utc_iso(start)})")
    if not out.parent.is_dir():
        raise ClipError(f"cannot write the clip {out}: there is no folder {out.parent}")
    segments = index.between(camera, start, end)
    if not segments:
        raise ClipError(_no_footage(index, camera, start, end))
    tmp = out.with_name(f".{out.name}.{os.getpid()}.part")
    try:
        taken, covered = _write(index, segments, start, end, tmp)
        counts = [n for _, n in taken]
        hashes, total = part_hashes(tmp, _ranges(counts))
        if total != sum(counts):
            raise ClipError(f"{out}: {total} packets read back from the clip, "
                            f"{sum(counts)} written")
        size, sha256 = file_sha256(tmp, sync=True)
        replace_synced(tmp, out)
    except OSError as e:
        raise ClipError(f"cannot write the clip {out}: {e.strerror or e}") from e
    finally:
        tmp.unlink(missing_ok=True)
    parts = [ClipPart(segment, first, n, h) for (segment, n), (first, _), h
             in zip(taken, _ranges(counts), hashes, strict=True)]
    kept = [p.segment for p in parts]
    return Clip(out, camera, (start, end), covered[0], covered[1], size, sha256, parts,
                _gaps(kept, start, end), _steps(kept))


def clock_step(before: Segment, after: Segment) -> float:
    """How far the wall clock was stepped between two segments recorded in this order
    (0 across boots: recorded time cannot tell a step from the time the node was off)."""
    if before.boot != after.boot:
        return 0.0
    step = (after.start - before.end) - (after.rec_start - before.rec_end)
    return step if abs(step) > STEP_S else 0.0


# --- internals ---


def _write(index: SegmentIndex, segments: list[Segment], start: float, end: float,
           tmp: Path) -> tuple[list[tuple[Segment, int]], tuple[float, float]]:
    """Mux the window's packets into `tmp`: [(segment, packets taken)], (covered window)."""
    taken: list[tuple[Segment, int]] = []
    clip = _Timeline(tmp, start, end)
    try:
        for segment in segments:
            container, stream, packets = _read(index, segment, probe=clip.out is None)
            stepped = bool(taken) and clock_step(taken[-1][0], segment) != 0.0
            with container:
                count = clip.add(segment, stream, packets, follow=stepped)
            if count:
                taken.append((segment, count))
        if clip.out is None:
            raise ClipError(f"camera {segments[0].camera!r}: the segments of "
                            f"{utc_iso(start)}–{utc_iso(end)} hold no playable video")
        clip.out.close()
    except av.error.FFmpegError as e:
        raise ClipError(f"writing the clip {tmp.name} failed: {why(e)}") from e
    finally:
        if clip.out is not None:
            clip.out.close()
    return taken, (clip.t0, clip.t_end)


class _Timeline:
    """The MP4 being written; each segment's packets are placed on it by wall time, and
    after a clock step right after the packets before them."""

    def __init__(self, tmp: Path, start: float, end: float) -> None:
        self.tmp, self.start, self.end = tmp, start, end
        self.out: OutputContainer | None = None
        self.t0 = self.t_end = 0.0  # covered window
        self._origin = 0.0  # the wall time at the clip's time 0, for the labels now placed
        self._last_dts: int | None = None
        self._last_end = 0  # where the last packet placed ends, in the clip's ticks

    def add(self, segment: Segment, stream: VideoStream,
            packets: list[Packet], *, follow: bool = False) -> int:  # type: ignore[type-arg]
        """Mux the segment's packets that belong in the window; how many there were.
        `follow`: the clock was stepped before this segment; it starts a new stretch."""
        tb = stream.time_base
        if not packets or tb is None:
            return 0
        ref = _ts(packets[0])
        walls = [segment.start + float((_ts(p) - ref) * tb) for p in packets]
        first = 0
        if self.out is None or follow:
            keys = [i for i, p in enumerate(packets) if p.is_keyframe]
            if not keys:
                return 0  # nothing a player could start on
            first = max((i for i in keys if walls[i] <= self.start + _EPS_S),
                        default=keys[0])
        if self.out is None:
            self.t0 = self._origin = walls[first]
            self.out = av.open(str(self.tmp), "w", format="mp4",
                               options={"movflags": "+faststart"})
            self.out.add_stream_from_template(stream).time_base = tb
        # B-frames: a packet shown before `end` may follow (in decode order) a reference
        # shown after it; the reference comes along.
        stop = max((i + 1 for i in range(first, len(packets))
                    if walls[i] < self.end - _EPS_S), default=first)
        if stop == first:
            return 0
        out_stream = self.out.streams.video[0]
        otb = out_stream.time_base
        if otb is None:  # PyAV sets it when the stream is added
            raise ClipError("the clip's video stream has no time base")
        if follow:  # these labels are another clock's: carry on from the last packet
            self._origin = walls[first] - float(self._last_end * otb)
            self.t0 = min(self.t0, walls[first])
        # The segment's first packet sits at its wall time; never before the one before it.
        offset = round((walls[first] - self._origin) / otb)
        anchor = _ts(packets[first])
        dts0 = offset + _rescale(_dts(packets[first]) - anchor, tb, otb)
        if self._last_dts is not None and dts0 <= self._last_dts:
            offset += self._last_dts + 1 - dts0
        for p, wall in zip(packets[first:stop], walls[first:stop], strict=True):
            self.t_end = max(self.t_end, wall + _duration_s(p, tb, stream))
            pts, dts = _ts(p), _dts(p)
            p.stream = out_stream
            p.pts = offset + _rescale(pts - anchor, tb, otb)
            p.dts = self._last_dts = offset + _rescale(dts - anchor, tb, otb)
            p.duration = _rescale(p.duration, tb, otb) if p.duration else 0
            p.time_base = otb
            self._last_end = max(self._last_end, p.pts + (p.duration or 1))
            self.out.mux(p)
        return stop - first


def _read(index: SegmentIndex, segment: Segment, *, probe: bool
          ) -> tuple[InputContainer, VideoStream, list[Packet]]:  # type: ignore[type-arg]
    """A segment's packets, from a file checked against the hash it was indexed with.
    `probe`: the clip's stream is made from this one; else a quick open (timing only)."""
    path = index.file(segment)
    try:
        data = path.read_bytes()  # one read: the bytes demuxed are the bytes checked
    except OSError as e:
        raise ClipError(f"cannot read segment {path}: {e.strerror or e}") from e
    if hashlib.sha256(data).hexdigest() != segment.sha256:
        raise ClipError(f"segment {path} no longer matches the hash it was recorded with "
                        "(damaged or altered on disk); it cannot be exported as evidence")
    try:
        container = av.open(io.BytesIO(data), "r", format="mpegts",
                            options={} if probe else _QUICK_OPEN)
    except av.error.FFmpegError as e:
        raise ClipError(f"segment {path} cannot be read as video: {why(e)}") from e
    try:
        stream = container.streams.video[0]
        packets = list(video_packets(container, stream))
    except (av.error.FFmpegError, IndexError) as e:
        container.close()
        raise ClipError(f"segment {path} cannot be read as video: {why(e)}") from e
    return container, stream, packets


def _ts(p: Packet) -> int:  # type: ignore[type-arg]
    ts = p.pts if p.pts is not None else p.dts
    if ts is None:
        raise ClipError("a recorded packet has no timestamp")
    return ts


def _dts(p: Packet) -> int:  # type: ignore[type-arg]
    return p.dts if p.dts is not None else _ts(p)


def _rescale(ticks: int, tb: Fraction, otb: Fraction) -> int:
    return ticks if tb == otb else round(ticks * tb / otb)


def _duration_s(p: Packet, tb: Fraction, stream: VideoStream) -> float:  # type: ignore[type-arg]
    if p.duration:
        return float(p.duration * tb)
    return 1 / float(stream.average_rate or stream.guessed_rate or 25)


def _ranges(counts: list[int]) -> list[tuple[int, int]]:
    return list(zip(itertools.accumulate([0, *counts[:-1]]), counts, strict=True))


def _steps(segments: list[Segment]) -> list[tuple[str, float]]:
    steps = [(b.path, round(clock_step(a, b), 3)) for a, b in itertools.pairwise(segments)]
    return [(path, step) for path, step in steps if step]


def _gaps(segments: list[Segment], start: float, end: float) -> list[tuple[float, float]]:
    gaps: list[tuple[float, float]] = []
    covered_to = start
    for s in sorted(segments, key=lambda s: s.start):  # by label: after a step back they overlap
        if s.start - covered_to > GAP_S:
            gaps.append((covered_to, min(s.start, end)))
        covered_to = max(covered_to, s.end)
    if end - covered_to > GAP_S:
        gaps.append((covered_to, end))
    return gaps


def _no_footage(index: SegmentIndex, camera: str, start: float, end: float) -> str:
    what = f"no footage from camera {camera!r} between {utc_iso(start)} and {utc_iso(end)}"
    held = index.segments(camera)
    if held:
        return (f"{what}; its recordings span {utc_iso(min(s.start for s in held))} to "
                f"{utc_iso(max(s.end for s in held))}")
    cameras = sorted({s.camera for s in index.segments()})
    if cameras:
        return f"{what}; it has no recordings at all (cameras recorded: {', '.join(cameras)})"
    return f"{what}; there are no recordings at all in {index.root}"
