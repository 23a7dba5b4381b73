"""`clip.request` from the hub: the footage is exported, signed and uploaded by a child
process (edge/record/delivery.py), one job at a time, so no video library ever loads in the
node's main process and neither the call button nor the uplink waits for it."""

from __future__ import annotations

import logging
import multiprocessing as mp
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from contract.commands import MAX_CLIP_S, ClipRequest, ClipResult, Response
from edge import clock
from edge.config.model import NodeConfig
from edge.counters import Counters
from edge.uplink.client import ReplyTo

log = logging.getLogger(__name__)

MAX_QUEUED = 8  # clip requests waiting for the exporter; more are refused, not piled up
NAME = "clip.request"

Answer = Callable[[ReplyTo, Response], None]
Reject = Callable[[ReplyTo, str, str, str], None]  # reply, command id, command name, why


class ClipRequests:
    def __init__(self, cfg: NodeConfig, counters: Counters, answer: Answer,
                 reject: Reject) -> None:
        self.cfg, self.counters = cfg, counters
        self._answer, self._reject = answer, reject
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._queued = 0

    def request(self, request: ClipRequest, reply: ReplyTo) -> None:
        """On the network thread: refuse what cannot be served, else queue the export."""
        why = self._refusal(request)
        if why:
            self._reject(reply, request.id, NAME, why)
            return
        from edge.record.delivery import ClipJob, deliver  # the child imports the video side

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
            busy = self._queued >= MAX_QUEUED
            if not busy:
                self._queued += 1
                if self._pool is None:
                    # Spawned, never forked: the main process has threads. One child per job,
                    # so no video library stays loaded in an idle process.
                    self._pool = ProcessPoolExecutor(
                        max_workers=1, mp_context=mp.get_context("spawn"), max_tasks_per_child=1)
                future = self._pool.submit(deliver, job)
        if busy:
            self._reject(reply, request.id, NAME, f"{MAX_QUEUED} clip requests are already "
                         "waiting; ask again later")
            return
        self._answer(reply, Response(id=request.id, command=NAME, status="accepted"))
        future.add_done_callback(lambda f: self._done(request, reply, f))

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

    def _done(self, request: ClipRequest, reply: ReplyTo,
              future: Future[dict[str, Any]]) -> None:
        with self._lock:
            self._queued -= 1
        try:
            result = future.result()
        except Exception as e:  # the child died (killed, out of memory): say so
            result = {"ok": False, "error": f"the export process failed: {e!r}"}
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
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
