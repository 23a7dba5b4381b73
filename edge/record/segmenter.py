"""The segmenter: a camera's encoded H.264 packets cut into ~10 s MPEG-TS files, never decoded.

Each segment starts on a keyframe and is written by stream copy into
``<recordings>/<camera>/<YYYYMMDD>/<HHMMSS.mmm>.ts`` (UTC start time). MPEG-TS is written
front to back with no index at the end, so a power cut mid-write leaves everything before
the cut readable (`reconcile` trims the torn tail on the next start). The file is hashed
while it is written; when it is complete it is synced and only then entered in the index.

Packet times are placed on the node's monotonic clock through an anchor at the first packet;
a live source whose clock drifts from it by more than `REANCHOR_S` is re-anchored and starts
a new segment. Each segment is labelled (name, index `start`/`end`) by the wall clock in force
when it starts, and indexed with its recorded time too (`timeline`). A step of the wall clock
(NTP or GPS setting it) is not a drift: the segment being written keeps its labels to its end,
and the next one starts at the first keyframe after the step, labelled by the new clock, so
no picture is lost and no label is rewritten. A disk that refuses writes (full, read-only,
gone) is reported in `state`, the packets are dropped, and writing is tried again every
`RETRY_S` (monotonic); the camera and detection go on.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import av
import av.error
from av.container import OutputContainer
from av.packet import Packet
from av.video.stream import VideoStream

from edge.record.index import RecordingIndexError, Segment, SegmentIndex
from edge.record.timeline import STEP_S, Reading, Timeline, clock_of

log = logging.getLogger(__name__)

SEGMENT_SUFFIX = ".ts"
REANCHOR_S = 2.0  # a live source's clock this far from ours: re-anchor (and cut)
RETRY_S = 10.0  # after a disk error, the next attempt to write
_GAP_S = 5.0  # a jump in packet time this large (either way) is a discontinuity: cut


class Room(Protocol):
    """Makes space before a segment is opened (the budget keeper)."""

    def make_room(self, need_bytes: int) -> str:
        """Evict until `need_bytes` more fit; '' when they do, else why they cannot."""
        ...


@dataclass(frozen=True, slots=True)
class RecorderState:
    """What the camera worker reports about recording, for telemetry."""

    ok: bool
    reason: str  # '' when ok; else what a technician should know (disk full, read-only...)
    segments: int  # written since start
    bytes: int  # written since start
    dropped_packets: int  # not recorded: waiting for a keyframe or the disk
    last_segment_end: float | None


class _HashingFile(io.RawIOBase):
    """The segment file: every byte FFmpeg writes is hashed and counted on the way."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._file = open(path, "xb")  # noqa: SIM115 - closed in close()
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        n = self._file.write(data)
        self.sha256.update(memoryview(data)[:n])
        self.bytes += n
        return n

    def sync_and_close(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
        super().close()


class _Open:
    """The segment being written: it starts at monotonic time `mono`, labelled `start` by the
    wall clock then in force (`offset` = wall minus monotonic)."""

    def __init__(self, path: Path, rel: str, template: VideoStream, mono: float, offset: float,
                 first_s: float) -> None:
        self.path, self.rel, self.first_s = path, rel, first_s
        self.mono, self.offset, self.start = mono, offset, mono + offset
        self.sink = _HashingFile(path)
        try:
            # PAT/PMT once a second, not FFmpeg's 10 per second: 0.7 % of the bytes saved,
            # and every segment still starts with them.
            self.container: OutputContainer = av.open(
                self.sink, "w", format="mpegts", options={"pat_period": "1", "sdt_period": "10"})
            self.stream = self.container.add_stream_from_template(template)
        except BaseException:
            self.sink.close()
            raise
        self.end_s = first_s
        self.packets = 0


def segment_name(camera: str, start: float) -> str:
    """The relative path of a camera's segment starting at `start` (unix seconds)."""
    t = datetime.fromtimestamp(start, UTC)
    return f"{camera}/{t:%Y%m%d}/{t:%H%M%S}.{t.microsecond // 1000:03d}{SEGMENT_SUFFIX}"


def start_of(path: str) -> float | None:
    """The start time a segment's name carries, None if it is not a segment's name."""
    parts = path.split("/")
    if len(parts) != 3 or not parts[2].endswith(SEGMENT_SUFFIX):
        return None
    stem = parts[2][: -len(SEGMENT_SUFFIX)].partition("-")[0]  # "-N": a second of that name
    try:
        t = datetime.strptime(parts[1] + stem, "%Y%m%d%H%M%S.%f")
    except ValueError:
        return None
    return t.replace(tzinfo=UTC).timestamp()


class Segmenter:
    """Writes one camera's packets into segments of about `segment_s` seconds.

    `template` is the source's video stream (codec parameters are copied from it); every
    packet given to `write` belongs to it and is handed back unchanged. `realtime` says the
    packets arrive as they are filmed (a live camera, a file paced at its frame rate); when
    False (a file read flat out) time follows the packets' own clock from the first.
    `timeline` gives the clocks (the system's; `now` instead: a clock that never steps).
    """

    def __init__(self, index: SegmentIndex, camera: str, template: VideoStream, *,
                 segment_s: float = 10.0, room: Room | None = None, realtime: bool = True,
                 now: Callable[[], float] | None = None,
                 timeline: Timeline | None = None) -> None:
        self.index, self.camera, self.template = index, camera, template
        self.segment_s, self.room, self.realtime = segment_s, room, realtime
        self.timeline = timeline or Timeline(index, clock_of(now))
        self._tick_s = 1 / float(template.average_rate or template.guessed_rate or 25)
        self._anchor: tuple[float, float] | None = None  # (monotonic, media seconds)
        self._offset = 0.0  # wall minus monotonic for the next segment's label
        self._open: _Open | None = None
        self._last_s: float | None = None
        self._failed_until = 0.0
        self._reason = ""
        self._segments = self._bytes = self._dropped = 0
        self._last_end: float | None = None

    @property
    def state(self) -> RecorderState:
        return RecorderState(not self._reason, self._reason, self._segments, self._bytes,
                             self._dropped, self._last_end)

    def write(self, packet: Packet) -> None:  # type: ignore[type-arg]
        """Record one packet of the source (keyframes start segments)."""
        ts = packet.pts if packet.pts is not None else packet.dts
        if ts is None or packet.time_base is None:
            self._dropped += 1
            return
        media_s = float(ts * packet.time_base)
        jumped = self._last_s is not None and abs(media_s - self._last_s) > _GAP_S
        self._last_s = media_s
        now = self.timeline.clock.read()
        mono = self._place(media_s, now)
        if packet.is_keyframe and self._open is not None and (
                jumped or mono - self._open.mono >= self.segment_s or mono < self._open.mono
                or abs(self._offset - self._open.offset) > STEP_S):
            self._finish()
        elif jumped and self._open is not None:
            self._finish()  # a discontinuity mid-GOP: the rest of the GOP cannot be placed
        if self._open is None and (not packet.is_keyframe
                                   or not self._start(mono, media_s, now.mono)):
            self._dropped += 1
            return
        if self._open is None:  # opened above, or this packet was dropped
            return
        self._mux(self._open, packet, media_s)

    def close(self) -> Segment | None:
        """Finish the segment being written (the camera stops); returns it once indexed."""
        return self._finish() if self._open is not None else None

    # --- internals ---

    def _place(self, media_s: float, now: Reading) -> float:
        """The packet's monotonic time; notes the wall clock in force for the next label."""
        if self._anchor is None:
            self._anchor, self._offset = (now.mono, media_s), now.offset
        mono = self._anchor[0] + (media_s - self._anchor[1])
        if self.realtime:
            self._offset = now.offset  # a file read flat out keeps its first one
            if abs(mono - now.mono) > REANCHOR_S:
                log.info("camera %s: its clock moved %.1f s from ours; re-anchored",
                         self.camera, mono - now.mono)
                self._anchor = (now.mono, media_s)
                mono = now.mono
                if self._open is not None:
                    self._finish()
        return mono

    def _start(self, mono: float, media_s: float, now_mono: float) -> bool:
        if now_mono < self._failed_until:
            return False
        if self.room is not None:
            need = self._bytes // self._segments * 2 if self._segments else 16 << 20
            why = self.room.make_room(need)
            if why:
                return self._fail(f"no room for recording: {why}", now_mono)
        rel = segment_name(self.camera, mono + self._offset)
        path = self.index.root / rel
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # A step back or a re-anchored clock can name the same millisecond again.
            for n in itertools.count(1):
                if not path.exists():
                    break
                rel = segment_name(self.camera, mono + self._offset).removesuffix(
                    SEGMENT_SUFFIX) + f"-{n}{SEGMENT_SUFFIX}"
                path = self.index.root / rel
            self._open = _Open(path, rel, self.template, mono, self._offset, media_s)
        except (OSError, av.error.FFmpegError) as e:
            return self._fail(f"cannot write {path.parent}: {_why(e)}", now_mono)
        return True

    def _mux(self, seg: _Open, packet: Packet, media_s: float) -> None:  # type: ignore[type-arg]
        # PyAV's mux rebases the packet to the output's time base; the decoder after us
        # needs it as it came.
        duration = float(packet.duration * packet.time_base) if packet.duration and \
            packet.time_base else self._tick_s
        saved = (packet.stream, packet.pts, packet.dts, packet.duration, packet.time_base)
        try:
            packet.stream = seg.stream
            seg.container.mux(packet)
        except (OSError, av.error.FFmpegError) as e:
            self._abandon(seg, e)
            return
        finally:
            packet.stream, packet.pts, packet.dts, packet.duration, packet.time_base = saved
        seg.packets += 1
        seg.end_s = max(seg.end_s, media_s + duration)

    def _finish(self) -> Segment | None:
        seg, self._open = self._open, None
        if seg is None:
            return None
        length = seg.end_s - seg.first_s
        end = seg.start + length
        rec = self.timeline.rec(seg.mono)
        try:
            seg.container.close()
            seg.sink.sync_and_close()
            segment = self.index.add(self.camera, seg.start, end, seg.rel, seg.sink.bytes,
                                     seg.sink.sha256.hexdigest(), rec=(rec, rec + length),
                                     boot=self.timeline.boot)
        except (OSError, av.error.FFmpegError, RecordingIndexError) as e:
            self._abandon(seg, e)
            return None
        self._segments += 1
        self._bytes += segment.bytes
        self._last_end = end
        if self._reason:
            log.info("camera %s: recording again", self.camera)
        self._reason = ""
        return segment

    def _abandon(self, seg: _Open, error: BaseException) -> None:
        """A write failed: drop the segment (its file is unusable) and report why."""
        self._open = None
        for close in (seg.container.close, seg.sink.close):
            with contextlib.suppress(OSError, av.error.FFmpegError):
                close()
        # Read-only or gone: reconcile deals with the file on the next start.
        with contextlib.suppress(OSError):
            seg.path.unlink(missing_ok=True)
        self._fail(f"writing {seg.rel} failed: {_why(error)}", self.timeline.clock.read().mono)

    def _fail(self, reason: str, now: float) -> bool:  # now: monotonic
        if reason != self._reason:
            log.error("camera %s: %s; retrying every %.0f s", self.camera, reason, RETRY_S)
        self._reason = reason
        self._failed_until = now + RETRY_S
        return False


def _why(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error)

