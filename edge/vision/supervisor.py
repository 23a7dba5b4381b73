"""The vision supervisor, in the node's main process: starts, watches and restarts workers.

Per camera it creates the frame ring and runs two worker processes, the camera worker
(source → ring) and the detection worker (ring → pipeline → events). One thread here
reads their pipes, hands events to the node, keeps the per-camera telemetry, and restarts
a worker that exits or whose heartbeat goes stale (hung), so a crash or a hang costs at
most `hang_timeout_s` plus a restart. The call button never depends on any of this:
nothing here runs in the alarm path, and workers run at a lower priority.

That thread starts and stops every worker, and is the only one that does: a worker dies
when the thread that started it ends (the kernel's parent-death signal), so the workers
live no longer than their supervisor, and never longer than the node however it dies.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from contract.payloads import CameraStats, RecordingStats
from edge.config.model import NodeConfig
from edge.config.vision import CameraSection
from edge.counters import Counters
from edge.vision.events import VisionEvent
from edge.vision.ringblock import RingBlock
from edge.vision.worker_common import Beat, CameraJob, DetectionJob, start

log = logging.getLogger(__name__)

RING_MAX = (1920, 1080)  # larger frames are scaled down to fit before detection
RING_SLOTS = 3
RESTART_PAUSE_S = 1.0  # between a worker's death and its restart; keeps a crash loop cheap
STOP_GRACE_S = 3.0  # for stopping workers to send their last messages, before they are killed
STATS_WINDOW_S = 10.0  # frame rates are over the last 10 s
EVENTS_WINDOW_S = 60.0

EventSink = Callable[[VisionEvent], None]


@dataclass
class _Worker:
    kind: str  # "camera" or "detector"
    module: str  # the worker's module, imported by the child only
    job: Any
    process: subprocess.Popen[bytes] | None = None
    conn: Connection | None = None
    beat: Beat | None = None
    restarts: int = 0
    down_since: float | None = None


@dataclass
class _CameraState:
    cfg: CameraSection
    ring: RingBlock | None  # None: the camera is recorded, not analysed
    workers: list[_Worker]
    online: bool = False
    reason: str = "starting"
    # Cumulative counters as each worker last reported them, stamped with the worker's own
    # clock, newest last; a restarted worker starts a fresh series.
    captured: deque[dict[str, float]] = field(default_factory=lambda: deque(maxlen=90))
    detected: deque[dict[str, float]] = field(default_factory=lambda: deque(maxlen=90))
    invoke_ms: float = 0.0
    skipped_before: float = 0.0  # frames skipped by detection workers that have since exited
    recording: dict[str, Any] | None = None  # the camera worker's latest recording report

    @property
    def det(self) -> dict[str, float]:
        """The detection worker's latest cumulative counters (empty before its first)."""
        return self.detected[-1] if self.detected else {}


class VisionSupervisor:
    def __init__(
        self, cfg: NodeConfig, on_event: EventSink, counters: Counters,
        *, lossless: bool = False,
    ) -> None:
        self.cfg = cfg
        self.on_event = on_event
        self.counters = counters
        self._stopping = threading.Event()  # workers are being stopped: do not restart them
        self._thread = threading.Thread(target=self._run, name="vision", daemon=True)
        self.cameras: dict[str, _CameraState] = {}
        snapshot_dir = cfg.data_dir / "snapshots" if cfg.vision.snapshots else None
        timeout = max(1.0, cfg.vision.hang_timeout_s - 2.0)
        level = logging.getLogger().getEffectiveLevel()
        for cam in cfg.cameras:
            ring_name = f"sce-{cfg.node.id}-{cam.name}"[:60]
            ring = (RingBlock.create(ring_name, *RING_MAX, slots=RING_SLOTS, lossless=lossless)
                    if cam.detect else None)
            recording = cfg.recording if cfg.recording.enabled else None
            jobs = [
                _Worker("camera", "edge.vision.camera_worker", CameraJob(
                    cam, ring_name, cfg.vision.worker_nice, level, timeout, timeout,
                    recording, cfg.recording_dir)),
            ]
            if cam.detect:
                jobs.append(_Worker("detector", "edge.vision.detection_worker", DetectionJob(
                    cam, cfg.detector, ring_name, snapshot_dir, cfg.vision.worker_nice,
                    level)))
            self.cameras[cam.name] = _CameraState(cam, ring, jobs)

    # --- life cycle (main thread) ---

    def start(self) -> None:
        """Start the supervisor thread; it starts the workers."""
        self._thread.start()

    def alive(self) -> bool:
        return not self.cameras or self._thread.is_alive()

    def stop(self) -> None:
        """Have the supervisor thread stop the workers (SIGTERM; their last `end` events still
        reach the node; killed after STOP_GRACE_S) and end, and wait for it."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(STOP_GRACE_S + 5)
        for state in self.cameras.values():
            if not self._thread.is_alive():  # else it still owns them; they die with it
                for worker in state.workers:
                    self._reap(worker, wait_s=0)
            if state.ring is not None:
                state.ring.close()

    def pids(self) -> dict[str, int | None]:
        """Worker pids by "<camera>/<kind>", for tests and diagnostics."""
        return {
            f"{name}/{w.kind}": (w.process.pid if w.process else None)
            for name, state in self.cameras.items() for w in state.workers
        }

    # --- supervisor thread ---

    def _spawn(self, state: _CameraState, worker: _Worker) -> None:
        if worker.kind == "camera":
            state.captured.clear()
        else:
            state.skipped_before += state.det.get("skipped", 0.0)
            state.detected.clear()
        started = start(worker.module, worker.job)
        worker.process, worker.conn, worker.beat = started.process, started.conn, started.beat
        log.info("camera %s: %s worker started (pid %s)", state.cfg.name, worker.kind,
                 worker.process.pid)
        worker.down_since = None

    def _reap(self, worker: _Worker, wait_s: float) -> None:
        if worker.process is not None:
            try:
                worker.process.wait(wait_s)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    worker.process.wait(2)
            worker.process = None
        if worker.conn is not None:
            worker.conn.close()
            worker.conn = None
        worker.beat = None

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._watch()  # first: the first pass starts the workers
                self._drain(timeout=0.25)
            except Exception:
                self.counters.inc("vision_supervisor_errors")
                log.exception("vision supervisor step failed")
                self._stopping.wait(0.5)
        self._wind_down()

    def _wind_down(self) -> None:
        """SIGTERM to every worker, their last messages drained, then the stragglers killed."""
        workers = [w for s in self.cameras.values() for w in s.workers]
        for worker in workers:
            if worker.process is not None and worker.process.poll() is None:
                worker.process.terminate()
        # A pipe is done once its EOF is read: the worker has sent all it will.
        deadline = time.monotonic() + STOP_GRACE_S
        while any(w.conn is not None for w in workers) and time.monotonic() < deadline:
            try:
                self._drain(timeout=0.1)
            except Exception:
                log.exception("vision supervisor: draining stopping workers failed")
                break
        deadline += 1.0  # for a worker whose pipe is closed to exit, before it is killed
        for worker in workers:
            self._reap(worker, wait_s=max(0.0, deadline - time.monotonic()))

    def _drain(self, timeout: float) -> None:
        owners: dict[int, tuple[_CameraState, _Worker, Connection]] = {
            id(w.conn): (state, w, w.conn) for state in self.cameras.values()
            for w in state.workers if w.conn is not None
        }
        if not owners:
            self._stopping.wait(timeout)
            return
        ready = wait([conn for *_, conn in owners.values()], timeout)
        for ready_conn in ready:
            state, worker, conn = owners[id(ready_conn)]
            try:
                while conn.poll():
                    self._handle(state, worker, conn.recv())
            except (EOFError, OSError):
                # The worker exited (or was killed mid-message); _watch restarts it.
                conn.close()
                worker.conn = None
            except Exception:
                self.counters.inc("vision_bad_messages")
                log.exception("bad message from %s %s", state.cfg.name, worker.kind)

    def _handle(self, state: _CameraState, worker: _Worker, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "event":
            self.counters.inc("vision_events")
            self.on_event(message[1])
        elif kind == "state":
            online, reason = bool(message[1]), str(message[2])
            if online != state.online or reason != state.reason:
                log.log(logging.INFO if online else logging.WARNING, "camera %s %s%s",
                        state.cfg.name, "online" if online else "offline",
                        f": {reason}" if reason else "")
            state.online, state.reason = online, reason
        elif kind == "recording":
            state.recording = dict(message[1])
        elif kind == "stats":
            stats: dict[str, float] = message[1]
            series = state.captured if worker.kind == "camera" else state.detected
            if series and stats["at"] < series[-1]["at"]:
                series.clear()  # cannot happen with one clock; keeps the rates sane if it did
            if worker.kind == "detector":
                state.invoke_ms = stats.pop("inference_ms", 0.0)
            series.append(stats)

    def _watch(self) -> None:
        now = time.monotonic()
        for state in self.cameras.values():
            for worker in state.workers:
                if self._stopping.is_set():
                    return
                if worker.process is None or worker.beat is None:  # not started, or failed to
                    self._spawn(state, worker)
                else:
                    self._check(state, worker, worker.process, worker.beat.value, now)

    def _check(self, state: _CameraState, worker: _Worker, proc: subprocess.Popen[bytes],
               beat: float, now: float) -> None:
        """Kill a hung worker; restart one that has exited, RESTART_PAUSE_S after its exit."""
        if proc.poll() is None and now - beat > self.cfg.vision.hang_timeout_s:
            log.error("camera %s %s worker hung for %.0f s: killing it",
                      state.cfg.name, worker.kind, now - beat)
            self.counters.inc("vision_worker_hangs")
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(2)
        if proc.poll() is None:
            return
        if worker.down_since is None:
            worker.down_since = now
            log.error("camera %s %s worker exited (code %s); restarting",
                      state.cfg.name, worker.kind, proc.returncode)
            if worker.kind == "camera":
                state.online = False
                state.reason = f"camera worker exited ({proc.returncode})"
        if now - worker.down_since >= RESTART_PAUSE_S:
            self._reap(worker, wait_s=0)
            worker.restarts += 1
            self.counters.inc("vision_worker_restarts")
            self._spawn(state, worker)

    # --- telemetry (any thread) ---

    def stats(self) -> dict[str, CameraStats]:
        out: dict[str, CameraStats] = {}
        for name, state in self.cameras.items():
            captured = list(state.captured)
            detected = list(state.detected)
            processed = _delta(detected, "processed", STATS_WINDOW_S)
            out[name] = CameraStats(
                online=state.online, reason=state.reason,
                capture_fps=round(_rate(captured, "frames", STATS_WINDOW_S), 2),
                processed_fps=round(_rate(detected, "processed", STATS_WINDOW_S), 2),
                skipped_frames=int(state.skipped_before + state.det.get("skipped", 0.0)),
                inferences_per_frame=round(
                    _delta(detected, "inferences", STATS_WINDOW_S) / processed, 3
                ) if processed else 0.0,
                inference_ms=round(state.invoke_ms, 2),
                events_per_min=round(_rate(detected, "events", EVENTS_WINDOW_S) * 60, 2),
                restarts={w.kind: w.restarts for w in state.workers},
                recording=RecordingStats.model_validate(state.recording)
                if state.recording else None,
            )
        return out


def _window(series: list[dict[str, float]], seconds: float) -> list[dict[str, float]]:
    # Measured back from now (workers share the machine's monotonic clock): a worker that
    # stopped reporting shows a rate of 0, not its last one.
    now = time.monotonic()
    return [s for s in series if now - s["at"] <= seconds]


def _delta(series: list[dict[str, float]], key: str, seconds: float) -> float:
    window = _window(series, seconds)
    return window[-1][key] - window[0][key] if len(window) >= 2 else 0.0


def _rate(series: list[dict[str, float]], key: str, seconds: float) -> float:
    window = _window(series, seconds)
    if len(window) < 2:
        return 0.0
    span = window[-1]["at"] - window[0]["at"]
    return (window[-1][key] - window[0][key]) / span if span > 0 else 0.0
