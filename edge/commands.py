"""Hub commands, received in the main process: validated here, carried out elsewhere.

Every message on `poles/<node>/command` gets an answer on the response topic: `rejected`
with what was wrong for anything malformed or unknown, `accepted` at once for a command
that takes time, then `done` with its result or `failed` with why. Work that touches video
(a clip export) runs in a child process, one at a time, so neither the call button nor the
uplink ever waits for it.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from pydantic import ValidationError

from edge.config.model import NodeConfig
from edge.contract.commands import MAX_CLIP_S, ClipRequest, ClipResult, Response
from edge.contract.topics import NodeTopics
from edge.telemetry import Counters
from edge.uplink import ReplyTo, Uplink

log = logging.getLogger(__name__)

KNOWN = ("clip",)
MAX_QUEUED = 8  # clip requests waiting for the exporter; more are refused, not piled up


class CommandDesk:
    def __init__(self, cfg: NodeConfig, topics: NodeTopics, uplink: Uplink,
                 counters: Counters) -> None:
        self.cfg, self.topics, self.uplink, self.counters = cfg, topics, uplink, counters
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._queued = 0

    def on_message(self, topic: str, payload: bytes, reply: ReplyTo) -> None:
        """From the uplink's network thread: answer at once, never block."""
        self.counters.inc("commands")
        try:
            data = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            self._reject(reply, "", "", f"not JSON: {e}")
            return
        if not isinstance(data, dict):
            self._reject(reply, "", "", "a command is a JSON object with id and command")
            return
        cid, name = (v if isinstance(v, str) else "" for v in (data.get("id"), data.get("command")))
        if name not in KNOWN:
            self._reject(reply, cid, name, f"unknown command {name!r}; known: {', '.join(KNOWN)}")
            return
        try:
            request = ClipRequest.model_validate(data)
        except ValidationError as e:
            self._reject(reply, cid, name, _first_error(e))
            return
        self._clip(request, reply)

    def _clip(self, request: ClipRequest, reply: ReplyTo) -> None:
        cameras = {c.name for c in self.cfg.cameras}
        if request.camera not in cameras:
            self._reject(reply, request.id, "clip", f"no camera {request.camera!r} on this "
                         f"node; it has {', '.join(sorted(cameras)) or 'none'}")
            return
        if request.end.timestamp() > time.time() + MAX_CLIP_S:
            self._reject(reply, request.id, "clip", "the window ends more than an hour from "
                         "now (by the node's clock); ask when it is over")
            return
        if not self.cfg.recording.enabled:
            self._reject(reply, request.id, "clip", "recording is disabled on this node")
            return
        from edge.record.delivery import ClipJob, deliver  # the child imports the video side

        job = ClipJob(
            request_id=request.id, node_id=self.cfg.node.id, camera=request.camera,
            start=request.start.timestamp(), end=request.end.timestamp(),
            upload_url=request.upload_url, manifest_url=request.manifest_url,
            recordings=self.cfg.recording_dir, identity=self.cfg.identity_dir,
            hold_days=self.cfg.recording.retention_days.alert, resumable=request.resumable,
            segment_s=self.cfg.recording.segment_s,
        )
        with self._lock:
            if self._queued >= MAX_QUEUED:
                busy = True
            else:
                busy = False
                self._queued += 1
                if self._pool is None:
                    # Spawned, never forked: the main process has threads. One child per job,
                    # so no video library stays loaded in an idle process.
                    self._pool = ProcessPoolExecutor(
                        max_workers=1, mp_context=mp.get_context("spawn"), max_tasks_per_child=1)
                future = self._pool.submit(deliver, job)
        if busy:
            self._reject(reply, request.id, "clip", f"{MAX_QUEUED} clip requests are already "
                         "waiting; ask again later")
            return
        self._answer(reply, Response(id=request.id, command="clip", status="accepted"))
        future.add_done_callback(lambda f: self._clip_done(request, reply, f))

    def _clip_done(self, request: ClipRequest, reply: ReplyTo,
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
            response = Response(id=request.id, command="clip", status="done",
                                clip=ClipResult.model_validate(result["clip"]))
        else:
            self.counters.inc("clips_failed")
            response = Response(id=request.id, command="clip", status="failed",
                                error=str(result.get("error", "unknown")))
        self._answer(reply, response)

    def _reject(self, reply: ReplyTo, cid: str, name: str, why: str) -> None:
        self.counters.inc("commands_rejected")
        log.warning("command %r (%s) rejected: %s", cid, name or "?", why)
        self._answer(reply, Response(id=cid, command=name, status="rejected", error=why))

    def _answer(self, reply: ReplyTo, response: Response) -> None:
        # A response topic outside our own tree would be refused by the broker's ACL.
        topic = reply.topic if reply.topic and self.topics.owns(reply.topic) \
            else self.topics.response
        self.uplink.publish(topic, response.to_bytes(), qos=1, correlation=reply.correlation)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def _first_error(e: ValidationError) -> str:
    err = e.errors(include_url=False)[0]
    where = ".".join(str(p) for p in err["loc"]) or "command"
    return f"{where}: {err['msg']}"
