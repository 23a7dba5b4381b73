"""The camera worker process: owns one camera, records it and puts its frames into the ring.

It opens the source once. Every demuxed packet goes to the recorder (stream copy; sources
without H.264 are encoded from the decoded frames), and, when the camera is analysed, the
frames are scaled for detection if config asks and written into the shared-memory ring the
detection worker reads. A camera with `detect: false` is demuxed only, never decoded.
A source that fails to open or drops out is reported offline (with the camera's own
explanation) and retried with backoff; the end of a file that does not loop is reported and
the worker idles. Stats go to the supervisor every second, recording state every five.

Each frame carries a stream time: the capture time for live and real-time sources, the
file's own timestamps when a file is read as fast as it can be (benchmarks), so dwell
times and speeds come out the same whatever the pacing.
"""

from __future__ import annotations

import logging
import time
from multiprocessing.connection import Connection

import cv2
import numpy as np

from drivers.backoff import Backoff
from drivers.camera import AvCamera, Camera, CameraError, Picamera2Camera, make_camera
from drivers.camera.picamera2_source import URL_PREFIX
from edge.config.vision import CameraSection
from edge.record.recorder import Recorder
from edge.vision.framebus import FrameRing
from edge.vision.worker_common import Beat, CameraJob, WorkerLink, on_sigterm, start_worker

log = logging.getLogger(__name__)

STATS_EVERY_S = 1.0
RECORDING_EVERY_S = 5.0  # recording state and disk usage (queries the index)


def camera_for(cfg: CameraSection, open_timeout_s: float, read_timeout_s: float,
               recorder: Recorder | None = None) -> Camera:
    """The driver for the configured source (Picamera2 for ``picamera2:N``, else FFmpeg)."""
    if cfg.url.startswith(URL_PREFIX.rstrip(":")):
        return make_camera(cfg.url, read_timeout_s=read_timeout_s)
    return make_camera(
        cfg.url, realtime=cfg.realtime, loop=cfg.loop,
        open_timeout_s=open_timeout_s, read_timeout_s=read_timeout_s,
        packet_sink=recorder.packet if recorder is not None else None,
    )


def start_recording(recorder: Recorder, camera: Camera) -> None:
    """Point the open camera's encoded stream at the recorder."""
    if isinstance(camera, AvCamera):
        recorder.start(camera.video_stream, camera.fps)
    elif isinstance(camera, Picamera2Camera):
        recorder.start_annexb(camera)


class _Feed:
    """Frames from one open camera into the ring, with the counts the stats need."""

    def __init__(self, job: CameraJob, ring: FrameRing | None, link: WorkerLink,
                 recorder: Recorder | None) -> None:
        self.job, self.ring, self.link, self.recorder = job, ring, link, recorder
        self.frames = 0
        self.dropped = 0  # lossless ring full for too long: the reader is gone
        self._next_stats = time.monotonic() + STATS_EVERY_S
        self._next_recording = time.monotonic()

    def scale(self, ring: FrameRing, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        want = self.job.camera.detect_width
        if want is None and ring.fits(w, h):
            return image
        width = want or w
        while True:
            height = max(2, round(h * width / w))
            if ring.fits(width, height):
                break
            width = int(width * 0.9)  # larger than the ring's slots: shrink until it fits
        if (width, height) == (w, h):
            return image
        return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)

    def run(self, camera: Camera) -> None:
        if self.ring is None and isinstance(camera, AvCamera) and (
                self.recorder is None or self.recorder.mode != "encode"):
            for _ in camera.demux():  # recorded, not analysed: nothing to decode
                self.frames += 1
                if self._step():
                    return
            return
        for frame in camera.frames():
            if self._step():
                return
            if self.recorder is not None and self.recorder.mode == "encode":
                self.recorder.frame(frame.image, frame.pts_s if frame.pts_s is not None
                                    else frame.captured_at)
            if self.ring is None:
                self.frames += 1
                continue
            # Files read faster than real time keep their own clock (it continues across
            # loops), so dwell times are in video seconds; everything else runs on capture time.
            realtime = self.job.camera.realtime or frame.pts_s is None
            t = frame.captured_at if realtime else frame.pts_s
            image = self.scale(self.ring, frame.image)
            if self.ring.write(image, t, frame.captured_at, wait_s=0.5):
                self.frames += 1
            else:
                self.dropped += 1

    def _step(self) -> bool:
        """Per frame or packet: heartbeat and reports; True when the worker should stop."""
        self.link.alive()
        self.maybe_report()
        return self.link.stopping.is_set()

    def maybe_report(self) -> None:
        now = time.monotonic()
        if now >= self._next_stats:
            self._next_stats = now + STATS_EVERY_S
            self.link.send(
                "stats", {"at": now, "frames": self.frames, "dropped": self.dropped}
            )
        if self.recorder is not None and now >= self._next_recording:
            self._next_recording = now + RECORDING_EVERY_S
            self.recorder.tick()
            self.link.send("recording", self.recorder.report())


def run(job: CameraJob, conn: Connection, beat: Beat) -> None:
    """Process entry point (from `worker_common.serve`)."""
    name = f"camera {job.camera.name}"
    start_worker(name, job.nice, job.log_level)
    link = WorkerLink(conn, beat, name)
    on_sigterm(link)
    ring = FrameRing.attach(job.ring_name) if job.camera.detect else None
    recorder = None
    if job.recording is not None and job.recording_dir is not None:
        recorder = Recorder(job.recording, job.recording_dir, job.camera.name,
                            realtime=job.camera.realtime)
    feed = _Feed(job, ring, link, recorder)
    backoff = Backoff(0.5, 10.0)
    try:
        while not link.stopping.is_set():
            link.alive()
            try:
                camera = camera_for(job.camera, job.open_timeout_s, job.read_timeout_s, recorder)
            except CameraError as e:  # a malformed source name: config passed, driver refused
                link.send("state", False, str(e))
                _idle(link, feed, None)
                break
            try:
                camera.open()
                if recorder is not None:
                    start_recording(recorder, camera)
                link.send("state", True, "")
                backoff.reset()
                feed.run(camera)
                if link.stopping.is_set():
                    break
                reason = "end of file"
            except CameraError as e:
                reason = str(e)
                log.warning("%s", reason)
            finally:
                if recorder is not None:
                    recorder.stop()  # the segment so far is kept and indexed
                camera.close()
            link.send("state", False, reason)
            feed.maybe_report()
            wait = backoff.next() if reason != "end of file" else None
            # A file that ended stays ended (loop: false); anything else is tried again.
            _idle(link, feed, wait)
    finally:
        if recorder is not None:
            recorder.close()
        if ring is not None:
            ring.close()


def _idle(link: WorkerLink, feed: _Feed, wait_s: float | None) -> None:
    """Keep the heartbeat going while there is nothing to read; None waits until stopped."""
    deadline = None if wait_s is None else time.monotonic() + wait_s
    while not link.stopping.is_set():
        link.alive()
        feed.maybe_report()
        left = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
        if left <= 0:
            return
        link.stopping.wait(left)
