"""The clips the hub asked poles for and what became of each: the hub's side of the `clip`
command (contract/commands.py).

ClipBook keeps one ClipRecord per request id: the window asked for, the pole's answers
(`accepted`, then `done` with the clip's size, hash and signed manifest, or `failed` /
`rejected` with why) and, once the hub has checked the uploaded clip, whether it verified.
An answer is matched by its id, or by the MQTT 5 correlation data the pole echoes when it
could not read the id. No I/O; thread-safe; readers get copies. Each change comes back as
one line for the operator ("" when nothing changed worth a line).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from datetime import datetime

from contract.commands import ClipRequest, ClipResult, Response

FINAL = ("done", "failed", "rejected")
NOT_SENT = "not sent"  # the broker refused the request, or it could not be published
MAX_CLIPS = 10_000  # past this the oldest records are forgotten


@dataclass
class ClipRecord:
    """One clip request and everything heard about it."""

    request_id: str
    node: str
    camera: str
    start: datetime  # the window asked for
    end: datetime
    upload_url: str
    requested_at: datetime  # by the hub's clock
    status: str = "requested"  # then "accepted" and one of FINAL, or NOT_SENT
    error: str = ""  # why failed, rejected or not sent, as the pole (or broker) said
    result: ClipResult | None = None  # with `done`
    answered_at: datetime | None = None  # the final answer, by the hub's clock
    answers: int = 0  # responses received, copies included
    verified: bool | None = None  # None until the hub has checked the uploaded clip
    problem: str = ""  # why it did not verify

    @property
    def settled(self) -> bool:
        """Nothing more will come from the pole: done, failed, rejected or never sent."""
        return self.status in FINAL or self.status == NOT_SENT

    @property
    def covered_s(self) -> float | None:
        """Seconds of footage the clip covers (from its first keyframe), once done."""
        if self.result is None:
            return None
        return (self.result.end - self.result.start).total_seconds()


class ClipBook:
    """Clip requests by id, in the order they were made."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clips: dict[str, ClipRecord] = {}
        self._unmatched = 0
        self._forgotten = 0

    def requested(self, node: str, request: ClipRequest, at: datetime) -> str:
        rec = ClipRecord(request.id, node, request.camera, request.start, request.end,
                         request.upload_url, at)
        with self._lock:
            self._clips[request.id] = rec
            if len(self._clips) > MAX_CLIPS:
                del self._clips[next(iter(self._clips))]
                self._forgotten += 1
        return f"{node} clip {request.id} requested: camera {request.camera}"

    def not_sent(self, request_id: str, why: str, at: datetime) -> str:
        with self._lock:
            rec = self._clips.get(request_id)
            if rec is None or rec.settled:
                return ""
            rec.status, rec.error, rec.answered_at = NOT_SENT, why, at
            return f"{rec.node} clip {request_id} not sent: {why}"

    def answer(self, node: str, response: Response, correlation: bytes | None,
               at: datetime) -> str:
        """Take a pole's response. A late `accepted` never undoes a final answer, and a
        repeated final answer (QoS 1 redelivery) changes nothing."""
        with self._lock:
            rec = self._match(node, response, correlation)
            if rec is None:
                self._unmatched += 1
                return (f"{node} answered {response.status} to {response.command or '?'} "
                        f"{response.id or '(no id)'}, a request this console did not make")
            rec.answers += 1
            if rec.settled or (response.status == "accepted" and rec.status == "accepted"):
                return ""
            if response.status == "accepted":
                rec.status = "accepted"
                return f"{node} clip {rec.request_id} accepted: exporting camera {rec.camera}"
            rec.status, rec.error, rec.answered_at = response.status, response.error, at
            if response.status == "done":
                rec.result = response.clip
                return f"{node} clip {rec.request_id} done: {_size(rec)} uploaded"
            return f"{node} clip {rec.request_id} {response.status}: {response.error}"

    def checked(self, request_id: str, ok: bool, problem: str = "") -> str:
        """Record the hub's check of the uploaded clip against its manifest."""
        with self._lock:
            rec = self._clips.get(request_id)
            if rec is None:
                return ""
            rec.verified, rec.problem = ok, "" if ok else problem
            if ok:
                return f"{rec.node} clip {request_id} verified: signed by the pole, unchanged"
            return f"{rec.node} clip {request_id} DID NOT VERIFY: {problem}"

    def _match(self, node: str, response: Response,
               correlation: bytes | None) -> ClipRecord | None:
        rec = self._clips.get(response.id) if response.id else None
        if rec is None and correlation is not None:
            try:
                rec = self._clips.get(correlation.decode("utf-8"))
            except UnicodeDecodeError:
                rec = None
        # Only the pole asked may answer for its request.
        return rec if rec is not None and rec.node == node else None

    # --- reading ---

    def get(self, request_id: str) -> ClipRecord | None:
        with self._lock:
            rec = self._clips.get(request_id)
            return None if rec is None else replace(rec)

    def records(self, limit: int | None = None) -> list[ClipRecord]:
        """Newest request first."""
        with self._lock:
            newest = list(reversed(self._clips.values()))[:limit]
            return [replace(c) for c in newest]

    def counts(self) -> dict[str, int]:
        """clips_requested, clips_pending (no final answer yet), clips_done, clips_failed
        (failed, rejected or not sent), clips_verified, clips_not_verified (checked and
        found wrong), clip_answers_unmatched (to requests this console did not make)."""
        with self._lock:
            recs = list(self._clips.values())
            unmatched = self._unmatched
        return {
            "clips_requested": len(recs),
            "clips_pending": sum(not c.settled for c in recs),
            "clips_done": sum(c.status == "done" for c in recs),
            "clips_failed": sum(c.settled and c.status != "done" for c in recs),
            "clips_verified": sum(c.verified is True for c in recs),
            "clips_not_verified": sum(c.verified is False for c in recs),
            "clip_answers_unmatched": unmatched,
        }


def _size(rec: ClipRecord) -> str:
    if rec.result is None:
        return "no clip"
    return f"{rec.covered_s:.1f} s, {rec.result.bytes / 1e6:.1f} MB"
