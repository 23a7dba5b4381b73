"""The demo's evidence step: the hub asks the pole for the clip around the first call and
checks what arrives.

Once the first call is acknowledged, ClipStep plans the request: the call's camera, from
`alert_window.before_s` before the press to `after_s` after it, uploaded to the hub's
evidence store. It asks once that footage can all be on disk (the window's end, plus one
segment for the segment holding it to be closed and indexed), then waits for the pole's
`done` and checks the upload against the signed manifest in it with the pole's public key.
Nothing here blocks: the script calls step() from its pauses, and waits for `finished`
only where it must (before it cuts the link, and before it ends).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from contract.evidence.keyfiles import PUBLIC_FILE
from contract.evidence.keys import EvidenceKeyError, fingerprint, load_public
from devkit.demo.pole import Pole
from edge import clock
from hub.client import HubConsole
from hub.clips import ClipRecord
from hub.evidence import EvidenceStore
from hub.state import AlertRecord

SETTLE_S = 1.5  # after a segment's end: the camera worker syncs the file and indexes it
ANSWER_TIMEOUT_S = 30.0  # request sent → `done` (export, sign, upload: a few seconds)

Say = Callable[[str, str], None]  # narration: text, rich style


@dataclass(frozen=True)
class ClipOutcome:
    ok: bool
    seq: int | None  # of the call whose clip it is
    text: str  # what arrived, or why nothing verified

    @property
    def line(self) -> str:
        return f"clip of call seq {self.seq if self.seq is not None else '?'}: {self.text}"


class ClipStep:
    """The clip of the first acknowledged call, from request to verified upload."""

    def __init__(self, pole: Pole, hub: HubConsole, store: EvidenceStore, say: Say) -> None:
        self.pole, self.hub, self.store, self.say = pole, hub, store, say
        rec = pole.cfg.recording
        self.node, self.camera = pole.cfg.node.id, pole.cfg.cameras[0].name
        self.before_s, self.after_s = rec.alert_window.before_s, rec.alert_window.after_s
        self.segment_s = rec.segment_s
        self.call: AlertRecord | None = None
        self.request_id = ""
        self.upload_name = ""
        self.outcome: ClipOutcome | None = None
        self._due = 0.0  # monotonic: when to ask
        self._deadline = 0.0  # monotonic: when to stop waiting for the answer

    # --- what the script uses ---

    @property
    def finished(self) -> bool:
        return self.outcome is not None

    def recorded_s(self) -> float | None:
        """Seconds of the camera's footage on the pole's disk, as its heartbeat tells the hub
        (from the oldest segment to now); None until it says."""
        node = next((n for n in self.hub.state.nodes() if n.node_id == self.node), None)
        stats = node.cameras.get(self.camera) if node is not None else None
        if stats is None or stats.recording is None or stats.recording.oldest is None:
            return None
        return time.time() - stats.recording.oldest

    def plan(self, call: AlertRecord) -> None:
        """Ask for this call's clip as soon as its footage can all be on disk."""
        if self.call is not None:
            return
        self.call = call
        end = call.raised_at + timedelta(seconds=self.after_s)
        wait = max(0.0, (end - clock.now()).total_seconds() + self.segment_s + SETTLE_S)
        self._due = time.monotonic() + wait
        self.say(f"the hub will ask for camera {self.camera}'s clip of call seq {call.seq} "
                 f"({self.before_s:.0f} s before to {self.after_s:.0f} s after the press) once "
                 f"it is all on the pole's disk, in {wait:.0f} s", "")

    def time_left(self) -> float:
        """Longest the rest can take: until the request is due, then the answer's timeout."""
        if self.call is None or self.finished:
            return 0.0
        if not self.request_id:
            return max(0.0, self._due - time.monotonic()) + ANSWER_TIMEOUT_S
        return max(0.0, self._deadline - time.monotonic())

    def step(self) -> None:
        """Ask when due; check the answer once it came; give up after the timeout."""
        if self.call is None or self.finished:
            return
        if not self.request_id:
            if time.monotonic() >= self._due:
                self._request(self.call)
            return
        rec = self.hub.state.clips.get(self.request_id)
        if rec is not None and rec.status == "done":
            self._check(rec)
        elif rec is not None and rec.settled:
            self._end(False, f"the pole answered {rec.status}: {rec.error or 'no reason given'}")
        elif time.monotonic() > self._deadline:
            status = rec.status if rec is not None else "unknown"
            self._end(False, f"no `done` from the pole within {ANSWER_TIMEOUT_S:.0f} s "
                      f"(last status: {status})")

    def give_up(self) -> None:
        if self.call is None:
            self.outcome = ClipOutcome(False, None, "not asked for: no call was acknowledged")
        elif not self.finished:
            self._end(False, "the demo could not wait longer for it")

    # --- steps ---

    def _request(self, call: AlertRecord) -> None:
        start = call.raised_at - timedelta(seconds=self.before_s)
        end = call.raised_at + timedelta(seconds=self.after_s)
        self.upload_name = f"{self.node}-{self.camera}-call{call.seq}.mp4"
        url = self.store.url(self.upload_name)
        self.say(f"hub asks {self.node} for the clip of call seq {call.seq}: camera "
                 f"{self.camera}, {_hms(start)}–{_hms(end)} UTC, to be PUT to {url}", "bold")
        self.request_id = self.hub.request_clip(self.node, self.camera, start, end, url)
        self._deadline = time.monotonic() + ANSWER_TIMEOUT_S

    def _check(self, rec: ClipRecord) -> None:
        key_path = self.pole.cfg.identity_dir / PUBLIC_FILE
        try:
            key = load_public(key_path)
        except EvidenceKeyError as e:
            self._end(False, f"cannot read the pole's public evidence key: {e}")
            return
        self.say(f"the hub checks the upload with the pole's public evidence key "
                 f"{fingerprint(key)}: read here from the node's data dir ({key_path}); in "
                 "the field the hub has it from the pole's enrolment", "")
        verdict = self.hub.check_clip(rec.request_id, self.store.path(self.upload_name), key)
        if not verdict.ok or rec.result is None:
            self._end(False, f"the clip did not verify: {verdict.problem}")
            return
        clip = rec.result
        segments = len(clip.manifest.get("segments", []))
        self._end(True, f"{rec.covered_s:.1f} s, {clip.bytes / 1e6:.1f} MB, sha256 "
                  f"{clip.sha256[:12]}…, manifest signature and {segments} segment hashes "
                  "verified")
        if clip.gaps:
            missing = sum((b - a).total_seconds() for a, b in clip.gaps)
            self.say(f"the clip has {len(clip.gaps)} gap(s) without footage, "
                     f"{missing:.1f} s in all", "yellow")

    def _end(self, ok: bool, text: str) -> None:
        self.outcome = ClipOutcome(ok, self.call.seq if self.call is not None else None, text)
        self.say(self.outcome.line, "green" if ok else "bold red")


def _hms(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%H:%M:%S.%f")[:-5]  # to the tenth of a second
