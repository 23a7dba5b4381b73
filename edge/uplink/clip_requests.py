"""`clip.request` from the hub: the footage is exported, signed and uploaded by a child
process (edge/record/delivery.py), one job at a time, so no video library ever loads in the
node's main process and neither the call button nor the uplink waits for it.

Each export is a fresh interpreter (never a fork of the threaded node), so no video library
stays loaded between exports. One exporter thread starts each export's child and waits for
it, and the child dies with that thread (its first lines set the kernel's parent-death
signal, see drivers/platform/parent_death.py), so no export outlives the node, however it
dies. The job goes to the child's stdin; its result comes back as JSON on its stdout.
"""

from __future__ import annotations

import json
import logging
import pickle
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from contract.commands import MAX_CLIP_S, ClipRequest, ClipResult, Response
from drivers.platform.parent_death import python_child
from edge import clock
from edge.config.model import NodeConfig
from edge.counters import Counters
from edge.uplink.client import ReplyTo

if TYPE_CHECKING:
    from edge.record.delivery import ClipJob

log = logging.getLogger(__name__)

MAX_QUEUED = 8  # clip requests waiting for the exporter; more are refused, not piled up
NAME = "clip.request"
ENTRY = "edge.record.delivery:serve"  # the export child's main
POLL_S = 0.25  # how often the exporter thread looks up from a running export
STOP_GRACE_S = 3.0  # for an export told to stop (SIGTERM) to clean up before it is killed

Answer = Callable[[ReplyTo, Response], None]
Reject = Callable[[ReplyTo, str, str, str], None]  # reply, command id, command name, why


@dataclass(frozen=True)
class _Export:
    request: ClipRequest
    reply: ReplyTo
    job: ClipJob


class ClipRequests:
    def __init__(self, cfg: NodeConfig, counters: Counters, answer: Answer,
                 reject: Reject) -> None:
        self.cfg, self.counters = cfg, counters
        self._answer, self._reject = answer, reject
        self._lock = threading.Lock()
        self._exports: queue.Queue[_Export | None] = queue.Queue()
        self._thread: threading.Thread | None = None  # the exporter, started at the first job
        self._closing = threading.Event()
        self._queued = 0  # accepted and not finished, the running one included

    def request(self, request: ClipRequest, reply: ReplyTo) -> None:
        """On the intake thread: refuse what cannot be served, else queue the export."""
        why = self._refusal(request)
        if why:
            self._reject(reply, request.id, NAME, why)
            return
        from edge.record.delivery import ClipJob  # the child imports the video side

        sync = clock.sync_state()
        asked_mono = clock.monotonic()  # the window's end is placed through the clock of now
        job = ClipJob(
            request_id=request.id, node_id=self.cfg.node.id, camera=request.camera,
            start=request.start.timestamp(), end=request.end.timestamp(),
            upload_url=request.upload_url, manifest_url=request.manifest_url,
            recordings=self.cfg.recording_dir, identity=self.cfg.identity_dir,
            hold_days=self.cfg.recording.retention_days.alert, resumable=request.resumable,
            segment_s=self.cfg.recording.segment_s, clock_synced=sync.synced,
            clock_source=sync.source, clock_offset_s=sync.offset_s,
            asked=(time.time(), asked_mono),
        )
        with self._lock:
            busy = self._no_room()
            if not busy:
                self._queued += 1
                if self._thread is None:
                    # Daemon: should the node exit without close(), the thread's end takes
                    # the running export with it.
                    self._thread = threading.Thread(target=self._run, name="clip-export",
                                                    daemon=True)
                    self._thread.start()
        if busy:
            self._reject(reply, request.id, NAME, busy)
            return
        self._answer(reply, Response(id=request.id, command=NAME, status="accepted"))
        self._exports.put(_Export(request, reply, job))  # after `accepted`: answers in order

    def _no_room(self) -> str:
        """Why no export can be queued now, or ''; under the lock."""
        if self._closing.is_set():
            return "the node is stopping; ask again once it is back"
        if self._queued >= MAX_QUEUED:
            return f"{MAX_QUEUED} clip requests are already waiting; ask again later"
        return ""

    def _refusal(self, request: ClipRequest) -> str:
        cameras = {c.name for c in self.cfg.cameras}
        if request.camera not in cameras:
            return (f"no camera {request.camera!r} on this node; it has "
                    f"{', '.join(sorted(cameras)) or 'none'}")
        if request.end.timestamp() > time.time() + MAX_CLIP_S:
            return ("the window ends more than an hour from now (by the node's clock); ask "
                    "when it is over")
        if not self.cfg.recording.enabled:
            return "recording is disabled on this node"
        return ""

    # --- the exporter thread: it alone starts export children, which die when it ends ---

    def _run(self) -> None:
        while (export := self._exports.get()) is not None and not self._closing.is_set():
            try:
                result = self._export(export.job)
            except Exception as e:  # a bug here must not leave later requests unanswered
                log.exception("clip request %s: running the export failed", export.request.id)
                result = {"ok": False, "error": f"the export process failed: {e!r}"}
            with self._lock:
                self._queued -= 1
            try:
                self._report(export.request, export.reply, result)
            except Exception:
                log.exception("clip request %s: answering the hub failed", export.request.id)
        # Requests still queued at a stop get no final answer: the hub asks again.

    def _export(self, job: ClipJob) -> dict[str, Any]:
        """Run `job` in a child of this thread; its result, or why there is none."""
        try:
            child = subprocess.Popen(  # noqa: S603 (this interpreter, our own program)
                python_child(ENTRY), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        except OSError as e:
            return {"ok": False, "error": f"cannot start the export process: {e}"}
        out = self._wait(child, pickle.dumps((job, logging.getLogger().getEffectiveLevel())))
        if self._closing.is_set() and child.returncode != 0:
            log.warning("clip request %s (camera %s): export stopped, the node is stopping",
                        job.request_id, job.camera)
            return {"ok": False, "error": "the node stopped during the export; ask again"}
        try:
            result = json.loads(out) if out else None
        except ValueError:
            result = None
        if isinstance(result, dict) and "ok" in result:
            return result
        why = f"the export process failed: {_how_it_ended(child)}"
        log.error("clip request %s (camera %s): %s", job.request_id, job.camera, why)
        return {"ok": False, "error": why}

    def _wait(self, child: subprocess.Popen[bytes], job: bytes) -> bytes:
        """The child's stdout once it exits; a stop asks it to end (SIGTERM), then kills it."""
        given: bytes | None = job
        stop_by: float | None = None
        while True:
            try:
                out, _ = child.communicate(given, timeout=POLL_S)
                return out
            except subprocess.TimeoutExpired:
                given = None  # sent already, or being sent: communicate carries on
            if not self._closing.is_set():
                continue
            if stop_by is None:
                child.terminate()
                stop_by = time.monotonic() + STOP_GRACE_S
            elif time.monotonic() > stop_by:
                child.kill()

    def _report(self, request: ClipRequest, reply: ReplyTo, result: dict[str, Any]) -> None:
        if result.get("ok"):
            self.counters.inc("clips_delivered")
            log.info("clip %s (camera %s) delivered", request.id, request.camera)
            response = Response(id=request.id, command=NAME, status="done",
                                clip=ClipResult.model_validate(result["clip"]))
        else:
            self.counters.inc("clips_failed")
            response = Response(id=request.id, command=NAME, status="failed",
                                error=str(result.get("error", "unknown")))
        self._answer(reply, response)

    def close(self) -> None:
        """Take no more requests, drop the queued ones, and stop a running export (answered
        `failed`); returns once the exporter thread has ended, or after a bounded wait."""
        with self._lock:
            self._closing.set()
            thread = self._thread
        self._exports.put(None)
        if thread is not None:
            thread.join(STOP_GRACE_S + 2 * POLL_S + 2)


def _how_it_ended(child: subprocess.Popen[bytes]) -> str:
    code = child.returncode
    if code is not None and code < 0:
        return f"it was killed ({signal.Signals(-code).name})"
    return f"it exited with code {code} and no result (see the node's log)"
