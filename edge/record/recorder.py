"""One camera's recording, as its camera worker runs it: source → segmenter → index, in budget.

H.264 and H.265 sources are recorded as they come (stream copy). Anything else (a USB camera
giving raw or MJPEG frames, a file in another codec) goes through the one encode path: the
decoded frames are encoded to H.264 here and the packets take the same way. The recorder
never raises into the camera loop: a disk that fails is reported in `report()` and retried,
while the camera keeps feeding detection.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.config.recording import RecordingSection
from edge.record.budget import DAY_S, Budget, Keeper
from edge.record.index import RecordingIndexError, SegmentIndex
from edge.record.reconcile import reconcile
from edge.record.segmenter import RETRY_S, Segmenter
from edge.record.timeline import Timeline, clock_of

if TYPE_CHECKING:
    import numpy as np
    from av.packet import Packet
    from av.video.stream import VideoStream

    from drivers.camera import Picamera2Camera
    from edge.record.annexb import PacketOutput
    from edge.record.encode import H264Encoder

log = logging.getLogger(__name__)

COPY_CODECS = frozenset({"h264", "hevc"})  # what MPEG-TS carries and players expect
SWEEP_EVERY_S = 300.0  # retention is in days; checking every few minutes is plenty
SWEEP_SHARE = 0.1  # ...and never less often than a tenth of it (a retention of seconds)


def budget_of(cfg: RecordingSection) -> Budget:
    return Budget(max_bytes=cfg.budget, max_fraction=cfg.budget_share,
                  min_free_bytes=cfg.min_free)


class Recorder:
    """Records camera `camera` into `root` per `cfg`; `realtime` as for the segmenter. Every
    wait and interval here is on the monotonic clock (`now`: a clock that never steps)."""

    def __init__(self, cfg: RecordingSection, root: Path, camera: str, *, realtime: bool = True,
                 now: Callable[[], float] | None = None) -> None:
        self.cfg, self.root, self.camera = cfg, root, camera
        self.realtime, self.clock = realtime, clock_of(now)
        self.index: SegmentIndex | None = None
        self.timeline: Timeline | None = None
        self.keeper: Keeper | None = None
        self.segmenter: Segmenter | None = None
        self.encoder: H264Encoder | None = None
        self.mode = ""  # "copy", "encode" or "annexb" once started
        self._output: PacketOutput | None = None
        self._reason = ""
        self._next_open = 0.0
        self._next_sweep = 0.0

    def _open_index(self) -> bool:
        if self.index is not None:
            return True
        now = self.clock.read().mono
        if now < self._next_open:
            return False
        try:
            self.index = SegmentIndex(self.root)
            self.timeline = Timeline(self.index, self.clock)
            found = reconcile(self.index, camera=self.camera, timeline=self.timeline)
            if found.repaired or found.dropped:
                log.warning("camera %s: after an unclean stop, %d segment(s) repaired, %d dropped",
                            self.camera, len(found.repaired), len(found.dropped))
        except (OSError, RecordingIndexError) as e:
            if self.index is not None:
                self.index.close()
            self.index, self.timeline = None, None
            self._next_open = now + RETRY_S
            self._set_reason(f"cannot open the recordings in {self.root}: {e}")
            return False
        self.keeper = Keeper(self.index, budget_of(self.cfg),
                             continuous_days=self.cfg.retention_days.continuous,
                             timeline=self.timeline)
        self._set_reason("")
        return True

    def start(self, source: VideoStream, fps: float | None) -> str:
        """Begin with an open FFmpeg source; returns the mode ("copy" or "encode")."""
        self.stop()
        if not self._open_index():
            return ""
        if self.index is None:  # _open_index() returned True: it is open
            return ""
        codec = source.codec_context.name
        if codec in COPY_CODECS:
            self.mode = "copy"
            self.segmenter = Segmenter(self.index, self.camera, source,
                                       segment_s=self.cfg.segment_s, room=self.keeper,
                                       realtime=self.realtime, timeline=self.timeline)
        else:
            from edge.record.encode import H264Encoder  # only sources without H.264 need it

            self.mode = "encode"
            self.encoder = H264Encoder(source.codec_context.width, source.codec_context.height,
                                       fps or 25.0, bitrate=self.cfg.encode_bitrate)
            self.segmenter = Segmenter(self.index, self.camera, self.encoder.stream,
                                       segment_s=self.cfg.segment_s, room=self.keeper,
                                       realtime=self.realtime, timeline=self.timeline)
            log.info("camera %s gives %s, not H.264: recording through the %s encoder",
                     self.camera, codec, self.encoder.codec_name)
        return self.mode

    def start_annexb(self, camera: Picamera2Camera) -> str:
        """Begin with the Pi camera: its hardware encoder writes H.264 that is segmented here."""
        from edge.record.annexb import PacketOutput  # PyAV packets from the encoder's bytes

        self.stop()
        if not self._open_index():
            return ""
        self.mode = "annexb"
        self._output = PacketOutput(self._annexb_packet, camera.fps)
        camera.start_encoder(self._output, bitrate=self.cfg.encode_bitrate)
        return self.mode

    def _annexb_packet(self, packet: Packet[Any]) -> None:
        # Called from Picamera2's encoder thread; only this thread writes segments then.
        if self.segmenter is None and self._output is not None and self.index is not None:
            template = self._output.stream
            if template is None:
                return
            self.segmenter = Segmenter(self.index, self.camera, template,
                                       segment_s=self.cfg.segment_s, room=self.keeper,
                                       realtime=True, timeline=self.timeline)
        if self.segmenter is not None:
            self.segmenter.write(packet)

    def packet(self, packet: Packet[Any]) -> None:
        """A demuxed source packet (the camera's packet sink); used in copy mode only."""
        if self.mode == "copy" and self.segmenter is not None:
            self.segmenter.write(packet)

    def frame(self, image: np.ndarray[Any, Any], pts_s: float) -> None:
        """A decoded frame at full size; used in encode mode only."""
        if self.mode != "encode" or self.encoder is None or self.segmenter is None:
            return
        try:
            packets = self.encoder.encode(image, pts_s)
        except RuntimeError as e:
            self._set_reason(f"encoding failed: {e}")
            return
        for packet in packets:
            self.segmenter.write(packet)

    def tick(self) -> None:
        """Periodic work from the camera loop: the retention sweep."""
        now = self.clock.read().mono
        if self.keeper is not None and now >= self._next_sweep:
            every = self.cfg.retention_days.continuous * DAY_S * SWEEP_SHARE
            self._next_sweep = now + min(SWEEP_EVERY_S, every)
            try:
                swept = self.keeper.sweep()
            except RecordingIndexError as e:
                log.error("camera %s: retention sweep failed: %s", self.camera, e)
                return
            if swept.segments:
                log.info("retention: %d old segment(s), %.0f MB deleted", swept.segments,
                         swept.bytes / 1e6)

    def stop(self) -> None:
        """Finish the segment being written (camera lost or worker stopping)."""
        if self.encoder is not None and self.segmenter is not None:
            try:
                for packet in self.encoder.flush():
                    self.segmenter.write(packet)
            except RuntimeError as e:
                log.warning("camera %s: encoder flush failed: %s", self.camera, e)
        if self.segmenter is not None:
            self.segmenter.close()
        if self.encoder is not None:
            self.encoder.close()
        self.segmenter, self.encoder, self.mode, self._output = None, None, "", None

    def close(self) -> None:
        self.stop()
        if self.index is not None:
            self.index.close()
            self.index, self.timeline = None, None

    def _set_reason(self, reason: str) -> None:
        if reason and reason != self._reason:
            log.error("camera %s: %s", self.camera, reason)
        self._reason = reason

    def report(self) -> dict[str, Any]:
        """The recording's state for telemetry (a plain dict: it crosses a process pipe)."""
        seg = self.segmenter.state if self.segmenter is not None else None
        reason = self._reason or (seg.reason if seg else "")
        out: dict[str, Any] = {
            "state": "failed" if reason else ("recording" if self.mode else "idle"),
            "reason": reason, "mode": self.mode,
            "segments_written": seg.segments if seg else 0,
            "dropped_packets": seg.dropped_packets if seg else 0,
        }
        if self.index is not None and self.keeper is not None and self.timeline is not None:
            try:
                usage = self.index.usage(self.timeline.now().rec)
                disk = self.keeper.disk()
            except (OSError, RecordingIndexError) as e:
                out["state"], out["reason"] = "failed", str(e)
                return out
            out.update(stored_bytes=usage.bytes, stored_segments=usage.segments,
                       pinned_bytes=usage.pinned_bytes, oldest=usage.oldest,
                       free_bytes=disk.free, budget_bytes=self.keeper.budget.limit(disk))
        return out
