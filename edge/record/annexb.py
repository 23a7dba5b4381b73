"""H.264 that arrives as Annex B bytes (the Pi camera's hardware encoder) made into PyAV packets.

Picamera2's `H264Encoder` hands its output one access unit at a time, as bytes with start
codes, a keyframe flag and a timestamp in microseconds. The segmenter wants what a demuxer
gives: `av.Packet`s with timestamps and a template stream to copy codec parameters from.
`AnnexBPackets` does that conversion and `PacketOutput` plugs it into picamera2 as an output.
`ParameterSets` keeps each keyframe decodable on its own (SPS/PPS in front of it); the
encode path (`edge.record.encode`) uses it too.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from fractions import Fraction
from typing import TypeAlias, cast

import av
import av.error
from av.packet import Packet
from av.video.stream import VideoStream

log = logging.getLogger(__name__)

TIME_BASE = Fraction(1, 1_000_000)  # picamera2 stamps frames in microseconds
_DEFAULT_FRAME_US = 33_333  # 30 fps: a guess for a frame without timestamp or fps hint
_START_CODE = b"\x00\x00\x00\x01"
_SPS, _PPS, _IDR = 7, 8, 5

# PyAV's Packet is generic only to type checkers, hence the quotes.
PacketSink: TypeAlias = "Callable[[Packet[VideoStream]], None]"


def _leading_nals(data: bytes) -> tuple[list[bytes], int | None]:
    """SPS/PPS units (without start codes) before the first picture slice, and that slice's
    type (None when `data` has no slice). Stops at the slice: picture data is never scanned."""
    headers: list[bytes] = []
    at = data.find(b"\x00\x00\x01")
    while at >= 0 and at + 3 < len(data):
        nal_type = data[at + 3] & 0x1F
        if 1 <= nal_type <= 5:
            return headers, nal_type
        end = data.find(b"\x00\x00\x01", at + 3)
        if nal_type in (_SPS, _PPS):
            # Zeros before the next start code belong to it (4-byte start code), not to this unit.
            headers.append(data[at + 3 : end if end >= 0 else len(data)].rstrip(b"\x00"))
        at = end
    return headers, None


class ParameterSets:
    """Puts the latest SPS/PPS in front of a keyframe that came without them.

    Some encoders send SPS/PPS once, or in a buffer of their own (V4L2 "separate header"
    mode); a segment that starts at such a keyframe would not decode. `complete(data,
    keyframe)` returns the access unit to keep: unchanged (the same object) when it already
    has them or is not a keyframe, with the remembered ones in front otherwise, or None when
    `data` holds parameter sets and no picture (they go in front of the next call's).
    """

    def __init__(self) -> None:
        self._headers = b""  # latest SPS+PPS seen, with start codes
        self._has_sps = False
        self._held = b""  # a picture-less buffer, put in front of the next one

    @property
    def known(self) -> bool:
        """Whether an SPS has been seen: without one no decoder can start."""
        return self._has_sps

    def complete(self, data: bytes, keyframe: bool) -> bytes | None:
        if self._held:
            data, self._held = self._held + data, b""
        headers, slice_type = _leading_nals(data)
        if headers:
            self._headers = b"".join(_START_CODE + unit for unit in headers)
            self._has_sps = any(unit[0] & 0x1F == _SPS for unit in headers)
        if slice_type is None:
            if not headers:
                return data  # no picture and no SPS/PPS (an SEI, or not Annex B): pass it on
            self._held = data
            return None
        if not headers and (keyframe or slice_type == _IDR) and self._headers:
            return self._headers + data
        return data


class AnnexBPackets:
    """Turns encoded access units (Annex B bytes, keyframe flag, µs timestamp) into packets.

    Until the first keyframe with SPS/PPS, `feed` returns None: nothing before it decodes.
    That keyframe is opened with FFmpeg's raw ``h264`` demuxer to make `stream`, the template
    a segmenter passes to ``add_stream_from_template``; from then on each `feed` returns a
    packet with pts = dts = the timestamp, in `TIME_BASE` (1 µs), and `stream` set. A missing
    timestamp becomes the previous one plus a frame (from `fps_hint`, else 1/30 s); one that
    does not increase becomes the previous plus 1 µs, since muxers refuse it otherwise.
    """

    def __init__(self, fps_hint: float | None = None) -> None:
        self._frame_us = round(1_000_000 / fps_hint) if fps_hint else _DEFAULT_FRAME_US
        # The raw demuxer assumes 25 fps; the template's rate is what a segmenter reads.
        self._demux_options = {"framerate": f"{fps_hint:g}"} if fps_hint else {}
        self._parameter_sets = ParameterSets()
        # The template's demuxer stays open while anyone holds the stream (it references its
        # container); it is never closed here: a template whose demuxer was closed crashes
        # the process when add_stream_from_template reads it.
        self._stream: VideoStream | None = None
        self._last_us: int | None = None

    @property
    def stream(self) -> VideoStream | None:
        """The template stream (codec parameters from the first keyframe); None before it."""
        return self._stream

    def feed(
        self, data: bytes, keyframe: bool, timestamp_us: int | None
    ) -> Packet[VideoStream] | None:
        complete = self._parameter_sets.complete(data, keyframe)
        if complete is None:
            return None
        keyframe = keyframe or _leading_nals(complete)[1] == _IDR
        if self._stream is None and not (keyframe and self._open_template(complete)):
            return None
        stream = cast(VideoStream, self._stream)
        if timestamp_us is None:
            timestamp_us = 0 if self._last_us is None else self._last_us + self._frame_us
        elif self._last_us is not None and timestamp_us <= self._last_us:
            timestamp_us = self._last_us + 1  # muxers refuse a dts that does not increase
        self._last_us = timestamp_us
        packet = cast("Packet[VideoStream]", Packet(complete))
        packet.stream = stream
        packet.time_base = TIME_BASE
        packet.pts = packet.dts = timestamp_us
        packet.is_keyframe = keyframe
        return packet

    def _open_template(self, keyframe: bytes) -> bool:
        if not self._parameter_sets.known:
            log.warning("H.264 keyframe without SPS/PPS: waiting for one that has them")
            return False
        try:
            container = av.open(io.BytesIO(keyframe), "r", format="h264",
                                options=self._demux_options)
        except av.error.FFmpegError as e:
            log.warning("H.264 keyframe FFmpeg cannot read (%s): waiting for the next", e)
            return False
        if not container.streams.video or not container.streams.video[0].codec_context.width:
            container.close()
            log.warning("H.264 keyframe without a picture size: waiting for the next")
            return False
        self._stream = container.streams.video[0]
        return True

    def close(self) -> None:
        """Start over: `stream` is None until the next keyframe. The old template stays valid
        for whoever still holds it, and is freed with the last reference."""
        self._stream, self._last_us = None, None
        self._parameter_sets = ParameterSets()


class PacketOutput:
    """A picamera2 encoder output that hands each encoded frame to `sink` as a packet.

    It has picamera2's ``Output`` interface (``start``, ``stop``, ``outputframe``) without
    importing picamera2, which exists only on Raspberry Pi OS; picamera2 checks
    ``isinstance(output, Output)``, so the code that imports it hands the encoder a subclass
    of its ``Output`` that forwards these three calls here. `sink` runs on picamera2's
    encoder thread. `start` begins a new stream (picamera2 restarts its timestamps at 0 when
    an encoder starts), so packets wait for a keyframe again and `stream` is rebuilt.
    """

    def __init__(self, sink: PacketSink, fps_hint: float | None = None) -> None:
        self._sink = sink
        self._packets = AnnexBPackets(fps_hint)
        self.recording = False

    @property
    def stream(self) -> VideoStream | None:
        """The template stream for the packets given to `sink`; None before the first keyframe."""
        return self._packets.stream

    def start(self) -> None:
        self._packets.close()
        self.recording = True

    def stop(self) -> None:
        self.recording = False

    def outputframe(self, frame: bytes | None, keyframe: bool = True, timestamp: int | None = None,
                    packet: object = None, audio: bool = False) -> None:
        if audio or frame is None:
            return  # video only: picamera2 sends audio through the same call
        encoded = self._packets.feed(bytes(frame), keyframe, timestamp)
        if encoded is not None:
            self._sink(encoded)

    def close(self) -> None:
        self._packets.close()
