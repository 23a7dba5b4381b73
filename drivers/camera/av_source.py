"""Cameras FFmpeg can read, through PyAV: video files, RTSP/HTTP streams and V4L2 (USB) devices.

One open container feeds both consumers of a camera: every demuxed video packet goes to the
optional `packet_sink` (the recorder segments these without re-encoding) before it is
decoded into the BGR frames that `frames()` yields for detection.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeAlias

import av
import av.error
import numpy as np
from av.container import InputContainer
from av.packet import Packet
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

from drivers.camera.av_connection import SourceKind, explain, ffmpeg_options, redact, source_kind
from drivers.camera.base import Camera, CameraError, Frame

log = logging.getLogger(__name__)

# PyAV's Packet is generic only to type checkers, hence the quotes.
PacketSink: TypeAlias = "Callable[[Packet[VideoStream]], None]"

# Consecutive packets that fail to decode before the stream counts as corrupt beyond use.
BAD_PACKETS_IN_A_ROW = 100
# A paced file that falls this far behind restarts its schedule instead of bursting.
_RESYNC_AFTER_S = 0.5
# FFmpeg's tty demuxer accepts any text file as ANSI art: not a camera.
_NOT_VIDEO_FORMATS = frozenset({"tty"})


class AvCamera(Camera):
    """A camera read with FFmpeg: a video file, an IP camera's RTSP/HTTP stream or a USB camera.

    `url` is a file path, a ``rtsp://``/``http://``... URL or ``/dev/videoN`` (read with
    FFmpeg's v4l2 input). `output_size` (width, height) scales decoded frames, e.g. for a
    low-resolution detection stream; packets given to `packet_sink` are never re-encoded.

    Files play at their own frame rate when `realtime` (as a live camera would deliver
    them) and start again at the end when `loop`, with timestamps continuing; a file whose
    header declares more frames than it holds raises :class:`CameraError` once the frames it
    has are delivered. Network sources use TCP for RTSP and give up with
    :class:`CameraError` after `open_timeout_s` without an answer or `read_timeout_s`
    without data; they and devices are live, so their end is an error too. `options` are
    extra FFmpeg options (e.g. ``{"video_size": "1280x720", "input_format": "mjpeg"}`` for
    a USB camera). `packet_sink` gets each packet before it is decoded and must not change
    it; it may keep it. A packet that fails to decode is counted in `decode_errors` and skipped;
    :data:`BAD_PACKETS_IN_A_ROW` such packets in a row raise :class:`CameraError`.
    Exceptions from `packet_sink` propagate unchanged. `clock` and `sleep` pace files.
    """

    def __init__(
        self,
        url: str | os.PathLike[str],
        *,
        output_size: tuple[int, int] | None = None,
        realtime: bool = True,
        loop: bool = False,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 5.0,
        options: Mapping[str, str] | None = None,
        packet_sink: PacketSink | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._url = os.fspath(url)
        self._kind = source_kind(self._url)
        self._output_size = output_size
        self._realtime = realtime
        self._loop = loop
        self._open_timeout_s = open_timeout_s
        self._read_timeout_s = read_timeout_s
        self._options = dict(options or {})
        self._packet_sink = packet_sink
        self._clock = clock
        self._sleep = sleep
        self._container: InputContainer | None = None
        self._stream: VideoStream | None = None
        self._reset_counters()

    def _reset_counters(self) -> None:
        self._index = 0
        self._packets = 0
        self._decode_errors = 0
        self._pass_packets = 0  # packets since the file's start, to notice a truncated file
        self._ts_offset = 0  # added to packet timestamps on loop passes, in stream ticks
        self._ts_end = 0  # end of the latest packet seen, shifted, in stream ticks
        self._tick = 1
        self._pace_anchor: tuple[float, float] | None = None

    @property
    def url(self) -> str:
        return self._url

    @property
    def name(self) -> str:
        return redact(self._url)

    @property
    def kind(self) -> SourceKind:
        return self._kind

    @property
    def is_open(self) -> bool:
        return self._container is not None

    @property
    def video_stream(self) -> VideoStream:
        """The open video stream, whose codec parameters a remuxer copies."""
        return self._require_open()[1]

    @property
    def size(self) -> tuple[int, int]:
        stream = self._require_open()[1]
        return self._output_size or (stream.codec_context.width, stream.codec_context.height)

    @property
    def fps(self) -> float | None:
        stream = self._require_open()[1]
        rate = stream.average_rate or stream.guessed_rate
        return float(rate) if rate else None

    @property
    def packets(self) -> int:
        """Video packets demuxed since open (each also given to `packet_sink`)."""
        return self._packets

    @property
    def frames_decoded(self) -> int:
        """Frames decoded and delivered since open (packets, when read with `demux()`)."""
        return self._index

    @property
    def decode_errors(self) -> int:
        """Packets that failed to decode and were skipped, since open."""
        return self._decode_errors

    def open(self) -> None:
        if self._container is not None:
            return
        self._reset_counters()
        timeout = None if self._kind == "file" else (self._open_timeout_s, self._read_timeout_s)
        started = time.monotonic()
        try:
            container = av.open(
                self._url,
                "r",
                format="v4l2" if self._kind == "device" else None,
                options=ffmpeg_options(self._url, self._read_timeout_s, self._options),
                timeout=timeout,
            )
        except av.error.FFmpegError as e:
            raise CameraError(self.name, self._explain(e, opening=True, since=started)) from e
        video = container.streams.video
        if container.format.name in _NOT_VIDEO_FORMATS or not video:
            container.close()
            raise CameraError(self.name, "has no video stream: is it a video file?")
        stream = video[0]
        if not stream.codec_context.width or not stream.codec_context.height:
            container.close()
            raise CameraError(self.name, "the video stream does not say its frame size")
        self._container, self._stream = container, stream
        fps = self.fps
        if fps and stream.time_base:
            self._tick = max(1, round(1 / (fps * stream.time_base)))
        log.info("camera %s open: %s %dx%d at %s fps", self.name, stream.codec_context.name,
                 stream.codec_context.width, stream.codec_context.height, fps)

    def close(self) -> None:
        container, self._container, self._stream = self._container, None, None
        if container is not None:
            container.close()

    def frames(self) -> Iterator[Frame]:
        container, stream = self._require_open()
        for decoded in self._passes(container, stream, decode=True):
            yield from decoded

    def demux(self) -> Iterator[Packet[VideoStream]]:
        """Demux without decoding: each packet goes to `packet_sink` and is yielded.

        For a camera that is recorded but not analysed; files are paced by packet time
        when `realtime`, as `frames()` paces them; ends and errors are as for `frames()`.
        """
        container, stream = self._require_open()
        yield from self._passes(container, stream, decode=False)

    def _passes(self, container: InputContainer, stream: VideoStream,
                *, decode: bool) -> Iterator[Any]:
        while True:
            if decode:
                yield self._one_pass(container, stream)
            else:
                yield from self._packets_only(container, stream)
            if self._kind != "file":
                raise CameraError(
                    self.name, "the stream ended (the camera stopped sending); check its power "
                    "and network")
            declared = stream.frames
            if declared and self._pass_packets < declared:
                raise CameraError(
                    self.name, f"the file ends after {self._pass_packets} of the {declared} "
                    "frames its header declares: it is truncated")
            if not self._loop:
                return
            self._rewind(container, stream)

    def _demux(self, container: InputContainer,
               stream: VideoStream) -> Iterator[Packet[VideoStream]]:
        """The source's packets, shifted past earlier loops and handed to the sink first."""
        packets = container.demux(stream)
        while True:
            started = time.monotonic()
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.error.FFmpegError as e:
                raise CameraError(self.name, self._explain(e, opening=False, since=started)) from e
            # PyAV ends the demux with an empty packet that drains the decoder: not the camera's.
            if packet.size or packet.dts is not None:
                self._packets += 1
                self._pass_packets += 1
                self._shift(packet)
                if self._packet_sink is not None:
                    self._packet_sink(packet)
            yield packet

    def _packets_only(self, container: InputContainer,
                      stream: VideoStream) -> Iterator[Packet[VideoStream]]:
        for packet in self._demux(container, stream):
            if not packet.size and packet.dts is None:
                continue
            if self._realtime and self._kind == "file":
                ts = packet.dts if packet.dts is not None else packet.pts  # dts never goes back
                self._pace(float(ts * packet.time_base) if ts is not None and packet.time_base
                           else None)
            self._index += 1
            yield packet

    def _one_pass(self, container: InputContainer, stream: VideoStream) -> Iterator[Frame]:
        bad_in_a_row = 0
        for packet in self._demux(container, stream):
            try:
                decoded = packet.decode()
            except av.error.FFmpegError as e:
                self._decode_errors += 1
                bad_in_a_row += 1
                (log.warning if self._decode_errors == 1 else log.debug)(
                    "camera %s: packet %d did not decode (%s); skipped", self.name,
                    self._packets, e.strerror or e)
                if bad_in_a_row >= BAD_PACKETS_IN_A_ROW:
                    raise CameraError(
                        self.name, f"{bad_in_a_row} packets in a row did not decode: the "
                        "stream is corrupt") from e
                continue
            bad_in_a_row = 0
            for video_frame in decoded:
                yield self._deliver(video_frame)

    def _shift(self, packet: Packet[VideoStream]) -> None:
        if self._ts_offset:
            if packet.pts is not None:
                packet.pts += self._ts_offset
            if packet.dts is not None:
                packet.dts += self._ts_offset
        ts = packet.pts if packet.pts is not None else packet.dts
        if ts is not None:
            self._ts_end = max(self._ts_end, ts + (packet.duration or self._tick))

    def _rewind(self, container: InputContainer, stream: VideoStream) -> None:
        try:
            container.seek(0)
        except av.error.FFmpegError as e:
            raise CameraError(self.name, f"cannot loop: seeking to the start failed "
                                         f"({e.strerror or e})") from e
        stream.codec_context.flush_buffers()
        self._pass_packets = 0
        first = stream.start_time or 0
        self._ts_offset = self._ts_end - first

    def _deliver(self, video_frame: VideoFrame) -> Frame:
        if self._output_size is None:
            array = video_frame.to_ndarray(format="bgr24")
        else:
            width, height = self._output_size
            array = video_frame.to_ndarray(format="bgr24", width=width, height=height)
        image = np.ascontiguousarray(array, dtype=np.uint8)
        pts_s = video_frame.time
        if self._realtime and self._kind == "file":
            self._pace(pts_s)
        frame = Frame(image=image, index=self._index, pts_s=pts_s, captured_at=self._clock())
        self._index += 1
        return frame

    def _pace(self, pts_s: float | None) -> None:
        media_s = pts_s if pts_s is not None else self._index / (self.fps or 25.0)
        now = self._clock()
        if self._pace_anchor is None:
            self._pace_anchor = (now, media_s)
            return
        anchor_clock, anchor_media = self._pace_anchor
        wait = anchor_clock + (media_s - anchor_media) - now
        if wait > 0:
            self._sleep(wait)
        elif wait < -_RESYNC_AFTER_S:
            self._pace_anchor = (now, media_s)

    def _explain(self, error: av.error.FFmpegError, *, opening: bool, since: float) -> str:
        return explain(error, self._kind, opening=opening, waited_s=time.monotonic() - since,
                       open_timeout_s=self._open_timeout_s, read_timeout_s=self._read_timeout_s)

    def _require_open(self) -> tuple[InputContainer, VideoStream]:
        if self._container is None or self._stream is None:
            raise CameraError(self.name, "not open: call open() first")
        return self._container, self._stream

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed"
        return f"<AvCamera {self.name} {state}, {self._index} frames>"
