"""The one encode path: pictures from sources that give no H.264 made into H.264 packets.

Cameras that send H.264 are recorded as they come (stream copy). A USB camera without
H.264, or a file in another codec (the demo's MS-MPEG4 `vtest.avi`), only gives frames:
`H264Encoder` encodes those with the Pi's hardware encoder (``h264_v4l2m2m``) when it
opens, else with libx264, into packets the segmenter cuts like any camera's: keyframes
flagged, SPS/PPS in front of every keyframe, no B-frames, and a template `stream`.
"""

from __future__ import annotations

import io
import logging
from fractions import Fraction
from typing import cast

import av
import av.error
import cv2
import numpy as np
import numpy.typing as npt
from av.codec import Codec
from av.codec.codec import UnknownCodecError
from av.container import OutputContainer
from av.packet import Packet
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

from edge.record.annexb import ParameterSets

log = logging.getLogger(__name__)

HARDWARE_CODEC = "h264_v4l2m2m"  # the Pi's encoder block, through V4L2
SOFTWARE_CODEC = "libx264"
TIME_BASE = Fraction(1, 90_000)  # the MPEG-TS clock: packets mux into segments without rounding
# Hardware encoders need a bitrate: 0.1 bit per pixel suits a street scene that changes slowly.
_BITS_PER_PIXEL = 0.1


class EncoderError(RuntimeError):
    """The H.264 encoder did not open or failed on a frame; `codec` names it."""

    def __init__(self, codec: str, what: str) -> None:
        super().__init__(f"H.264 encoder {codec}: {what}")
        self.codec = codec


class H264Encoder:
    """Encodes BGR frames of `width`×`height` at about `fps` into H.264 packets.

    `codec` forces an FFmpeg H.264 encoder; by default the Pi's hardware encoder is tried
    and libx264 (preset ultrafast, tune zerolatency) used where it does not open. A keyframe
    comes every `gop_s` seconds (``round(gop_s * fps)`` frames) and nowhere else, so segments
    can be cut there. `bitrate` (bit/s) caps the stream; without it libx264 encodes at
    constant quality and the hardware encoder at 0.1 bit per pixel.

    An odd `width` or `height` is rounded down to even (4:2:0 needs it). A frame of another
    size than the encoder's is resized to it with ``cv2.resize`` (area interpolation).

    Packets carry pts = dts in `TIME_BASE` (1/90000 s) and `.stream` set to `stream`, the
    template a segmenter passes to ``add_stream_from_template``. `flush` ends the stream;
    `close` releases the encoder, after which `stream` is no longer a template. Errors from
    FFmpeg raise :class:`EncoderError`.
    """

    def __init__(self, width: int, height: int, fps: float, *, gop_s: float = 2.0,
                 bitrate: int | None = None, codec: str | None = None) -> None:
        if width < 2 or height < 2 or fps <= 0 or gop_s <= 0:
            raise ValueError(f"cannot encode {width}x{height} at {fps} fps, gop {gop_s} s")
        self._size = (width // 2 * 2, height // 2 * 2)  # 4:2:0 chroma needs even sizes
        self._rate = Fraction(fps).limit_denominator(1001)
        self._gop = max(1, round(gop_s * fps))
        self._bitrate = bitrate
        self._parameter_sets = ParameterSets()
        self._last_pts: int | None = None
        names = [codec] if codec else [HARDWARE_CODEC, SOFTWARE_CODEC]
        for name in names:
            try:
                self._container, self._stream, self._codec_name = self._open(name)
                break
            except EncoderError as e:
                if name == names[-1]:
                    raise
                log.info("%s; encoding with %s", e, names[-1])
        log.info("encoding %dx%d at %s fps with %s, a keyframe every %d frames",
                 width, height, self._rate, self._codec_name, self._gop)

    def _open(self, name: str) -> tuple[OutputContainer, VideoStream, str]:
        try:
            encoder = Codec(name, "w")
        except UnknownCodecError:
            raise EncoderError(name, "FFmpeg has no encoder of that name") from None
        if encoder.canonical_name != "h264":
            raise EncoderError(name, f"encodes {encoder.canonical_name}, not H.264")
        name = encoder.name  # "h264" names FFmpeg's default H.264 encoder: say which
        width, height = self._size
        # A container never written to: it only gives the stream a home, for use as a template.
        container = av.open(io.BytesIO(), "w", format="mpegts")
        try:
            options = {}
            if name == SOFTWARE_CODEC:  # scenecut=0: keyframes every gop and nowhere else
                options = {"preset": "ultrafast", "tune": "zerolatency",
                           "x264-params": "scenecut=0"}
            stream = cast(VideoStream, container.add_stream(name, rate=self._rate, options=options))
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            context = stream.codec_context
            context.time_base = TIME_BASE
            context.gop_size = self._gop
            context.max_b_frames = 0  # B-frames would make dts differ from pts and add delay
            bitrate = self._bitrate
            if bitrate is None and name != SOFTWARE_CODEC:
                bitrate = round(width * height * float(self._rate) * _BITS_PER_PIXEL)
            if bitrate is not None:
                context.bit_rate = bitrate
            context.open()
            # Copies the open encoder's parameters into the stream, where templates read them.
            container.start_encoding()
        except av.error.FFmpegError as e:
            container.close()
            raise EncoderError(name, f"did not open for {width}x{height}: {e}") from e
        return container, stream, name

    @property
    def stream(self) -> VideoStream:
        """The template for ``add_stream_from_template``: codec, size and time base."""
        return self._stream

    @property
    def codec_name(self) -> str:
        """The FFmpeg encoder in use: ``h264_v4l2m2m`` or ``libx264`` (or the forced one)."""
        return self._codec_name

    def encode(self, image: npt.NDArray[np.uint8], pts_s: float) -> list[Packet[VideoStream]]:
        """Encode one BGR uint8 image shown at `pts_s` seconds; returns the packets ready."""
        width, height = self._size
        if image.shape[1] != width or image.shape[0] != height:
            resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
            image = resized.astype(np.uint8, copy=False)
        frame = VideoFrame.from_ndarray(image, format="bgr24")
        pts = round(pts_s / TIME_BASE)
        if self._last_pts is not None and pts <= self._last_pts:
            # Muxers refuse a dts that does not increase; a tick (11 µs) later keeps the frame.
            pts = self._last_pts + 1
        self._last_pts = pts
        frame.pts, frame.time_base = pts, TIME_BASE
        return self._send(frame, f"the frame at {pts_s:.3f} s")

    def flush(self) -> list[Packet[VideoStream]]:
        """The packets still inside the encoder; it takes no frame afterwards."""
        return self._send(None, "flush")

    def _send(self, frame: VideoFrame | None, what: str) -> list[Packet[VideoStream]]:
        try:
            encoded = self._stream.encode(frame)
        except av.error.FFmpegError as e:
            raise EncoderError(self._codec_name, f"failed on {what}: {e}") from e
        packets: list[Packet[VideoStream]] = []
        for packet in encoded:
            data = bytes(packet)
            complete = self._parameter_sets.complete(data, packet.is_keyframe)
            if complete is None:
                continue  # SPS/PPS alone: they go in front of the next picture
            if complete is not data:
                packet = self._repacked(packet, complete)
            packets.append(packet)
        return packets

    def _repacked(self, packet: Packet[VideoStream], data: bytes) -> Packet[VideoStream]:
        fixed = cast("Packet[VideoStream]", Packet(data))
        fixed.stream, fixed.time_base = self._stream, packet.time_base
        fixed.pts, fixed.dts, fixed.is_keyframe = packet.pts, packet.dts, packet.is_keyframe
        return fixed

    def close(self) -> None:
        """Release the encoder and the template stream's container."""
        self._container.close()
