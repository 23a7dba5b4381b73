"""The node's side of a firmware update (`cmd/firmware.update`). The node cannot touch the
card's partitions: it hands the hub's command to the root installer as `request.json`,
tells the hub what the installer and the commit service write back (progress, refusal,
committed or rolled back) as answers to that command, and, on a trial boot, tells the commit
service it is healthy. The files between them are defined in firmware/handoff.py."""

from __future__ import annotations

import logging
import math
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path

from contract.commands import FirmwareUpdate, Response
from contract.pole import FirmwareProgress, FirmwareStats
from drivers.storage import replace_synced
from edge import clock
from edge.uplink.client import ReplyTo
from firmware import handoff
from firmware.bootctl import BootControlError, slot_from_cmdline, slot_partuuids
from firmware.handoff import Healthy, Pending, Progress, Reply, Request, Result
from firmware.release import installed

log = logging.getLogger(__name__)

COMMAND = "firmware.update"
STEP_PCT = 5.0  # at most one progress answer per 5 % of the download (and per stage)
TAKE_S = 300.0  # the installer's path unit takes a request in seconds; not by then: it is down
_FINAL = ("refused", "failed")
_SHARED = {"stage", "bytes", "total", "downloaded", "reused", "version", "slot",
           "reason"}  # Progress → FirmwareProgress
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")


class FirmwareDesk:
    def __init__(self, folder: Path, answer: Callable[[ReplyTo, Response], None],
                 connected: Callable[[], bool], *, cmdline: Path = Path("/proc/cmdline")) -> None:
        """`folder` is `<data_dir>/firmware`; `answer` is CommandDesk.answer (so a duplicate id
        gets the last answer); `connected` says whether the uplink is up."""
        self.folder = folder
        self._answer, self._connected = answer, connected
        self.release = installed()
        self.slot = booted_slot(cmdline)
        self._lock = threading.Lock()
        self._seen: tuple[object, object] | None = None  # progress.json, result.json last read
        self._recheck = math.inf  # monotonic: look again then though no file changed
        self._routes: dict[str, Reply] = {}  # the installer drops request.json when done
        self._queued: tuple[str, float] | None = None  # id, when it was queued (monotonic)
        self._told: tuple[str, str, int] | None = None  # id, stage, 5 % step last answered
        self._update: FirmwareProgress | None = None
        self._marked = False

    def start(self, command: FirmwareUpdate, reply: ReplyTo) -> Response:
        """Queue the update for the installer: `accepted` (queued), or why not."""
        with self._lock:
            self._settle()  # an earlier update's end, answered before its files are reused
            if busy := self._busy():
                return self._response(command.id, "rejected", error=busy)
            route = Reply(id=command.id, topic=reply.topic or "",
                          correlation=(reply.correlation or b"").hex())
            try:
                handoff.write(self.folder, handoff.REQUEST, Request(
                    reply=route, url=command.url, sha256=(command.sha256 or "").lower(),
                    reboot=command.reboot))
            except OSError as e:
                return self._response(command.id, "failed", error=f"cannot hand the update "
                                      f"to the installer: {e}")
            self._routes[command.id] = route
            self._seen = None  # the next poll starts the installer's clock
            self._told = (command.id, "queued", 0)
            self._update = FirmwareProgress(stage="queued")
            log.info("firmware update %s queued for the installer: %s", command.id,
                     command.url.split("?")[0])  # a presigned URL's query is a secret
            return self._response(command.id, "accepted", self._update)

    def _busy(self) -> str:
        pending = handoff.read(self.folder, handoff.PENDING, Pending)
        if pending is not None:
            return (f"update {pending.reply.id} ({pending.version}) is armed in slot "
                    f"{pending.slot} for a trial boot; send another once it has ended")
        request = handoff.read(self.folder, handoff.REQUEST, Request)
        if request is None:
            return ""
        view = self._view(_of(request.reply.id, handoff.read(
            self.folder, handoff.PROGRESS, Progress)), None)
        return "" if view.stage in _FINAL else (
            f"update {request.reply.id} is under way ({view.stage}, {view.percent:.0f} %); "
            "send another once it has ended")

    def poll(self) -> None:
        """Tell the hub what changed; two stat() calls when nothing did."""
        seen = (_stamp(self.folder / handoff.PROGRESS), _stamp(self.folder / handoff.RESULT))
        if seen == self._seen and clock.monotonic() < self._recheck:
            return
        with self._lock:
            self._recheck = math.inf
            if self._settle():
                self._seen = seen

    def _settle(self) -> bool:
        """Answer what the files say; False when an answer waits for the uplink."""
        result = handoff.read(self.folder, handoff.RESULT, Result)
        progress = handoff.read(self.folder, handoff.PROGRESS, Progress)
        if result is not None:
            return self._report(result, progress)
        request = handoff.read(self.folder, handoff.REQUEST, Request)
        pending = handoff.read(self.folder, handoff.PENDING, Pending)
        cid = self._current(request, pending, progress)
        if not cid:
            self._update = self._last_outcome(progress)
            return True
        mine = _of(cid, progress)
        self._update = view = self._view(mine, pending if pending and pending.reply.id == cid
                                         else None)
        error = ""
        if mine is not None and mine.stage in _FINAL:
            error = mine.error or f"{mine.stage}: {mine.reason}"
        elif mine is None and pending is None:  # queued: has the installer taken it?
            if not self._not_taken(cid):
                return True
            self._update = view = view.model_copy(update={"stage": "failed"})
            error = (f"the installer did not take the update within {TAKE_S:.0f} s (is "
                     "edge-firmware-install.path running?)")
        if not self._connected():
            return False
        reply = self._reply_to(self._routes.get(cid) or Reply(id=cid))
        if error:
            # The request goes first: once the hub hears `failed`, its next update is taken.
            if request is not None and request.reply.id == cid:
                handoff.remove(self.folder, handoff.REQUEST)
            self._answer(reply, self._response(cid, "failed", view, error=error))
            log.warning("firmware update %s %s: %s", cid, view.stage, error)
            self._routes.pop(cid, None)
            self._queued = self._told = None
            return True
        told = (cid, view.stage, int(view.percent // STEP_PCT))
        if told != self._told:
            self._told = told
            self._answer(reply, self._response(cid, "accepted", view))
        return True

    def _current(self, request: Request | None, pending: Pending | None,
                 progress: Progress | None) -> str:
        """The id of the update the files speak of ('' for none); its reply route noted."""
        routes = [x.reply for x in (request, pending) if x is not None]
        self._routes.update((route.id, route) for route in routes)
        cid = routes[0].id if routes else ""
        if not cid and progress is not None and progress.id in self._routes:
            cid = progress.id  # the installer finished with it and removed request.json
        return cid

    def _not_taken(self, cid: str) -> bool:
        """Whether the installer has left a queued update untaken for TAKE_S."""
        if self._queued is None or self._queued[0] != cid:
            self._queued = (cid, clock.monotonic())
        if clock.monotonic() - self._queued[1] < TAKE_S:
            self._recheck = self._queued[1] + TAKE_S
            return False
        return True

    def _report(self, result: Result, progress: Progress | None) -> bool:
        """The commit service's word on how the update ended: answered once, then renamed."""
        cid = result.reply.id
        self._update = view = _ended(result, progress)
        if not self._connected():
            return False
        self._answer(self._reply_to(result.reply), self._response(
            cid, "done" if result.status == "done" else "failed", view,
            error=result.error if result.status == "failed" else ""))
        try:
            replace_synced(self.folder / handoff.RESULT, self.folder / handoff.REPORTED)
        except OSError as e:  # answered again after a restart; the hub dedupes by id
            log.error("cannot rename %s: %s", self.folder / handoff.RESULT, e)
        self._routes.pop(cid, None)
        self._told = None
        log.log(logging.INFO if result.status == "done" else logging.WARNING,
                "firmware update %s %s: running %s in slot %s%s", cid, view.stage,
                result.version, result.slot, f" ({result.error})" if result.error else "")
        return True

    def _view(self, progress: Progress | None, pending: Pending | None) -> FirmwareProgress:
        view = FirmwareProgress(stage="queued") if progress is None else FirmwareProgress(
            percent=progress.percent, **progress.model_dump(include=_SHARED))
        if pending is None:
            return view
        return view.model_copy(update={"version": pending.version, "slot": pending.slot,
                                       "stage": "trial" if self.slot == pending.slot else
                                       view.stage if progress is not None else "installed"})

    def _last_outcome(self, progress: Progress | None) -> FirmwareProgress | None:
        """For the heartbeat: how the last update ended (refused, failed, or the result)."""
        reported = handoff.read(self.folder, handoff.REPORTED, Result)
        if progress is not None and progress.stage in _FINAL and (
                reported is None or progress.time > reported.time):
            return self._view(progress, None)
        return None if reported is None else _ended(reported, progress)

    def mark_healthy(self, checks: dict[str, bool]) -> None:
        """On a trial boot, once every check passes, tell the commit service (once a boot)."""
        if self._marked or not all(checks.values()):
            return
        pending = handoff.read(self.folder, handoff.PENDING, Pending)
        if pending is None or (self.slot and pending.slot != self.slot):
            return  # no update, or one armed for the next boot: nothing to prove now
        me = handoff.boot_id()
        mark = handoff.read(self.folder, handoff.HEALTHY, Healthy)
        if mark is None or mark.boot_id != me:
            try:
                handoff.write(self.folder, handoff.HEALTHY, Healthy(boot_id=me, checks=checks))
            except OSError as e:  # tried again on the next tick; the trial may time out
                log.error("cannot tell the commit service the node is healthy: %s", e)
                return
            log.info("trial boot of %s in slot %s: healthy (%s), told the commit service",
                     pending.version, pending.slot, ", ".join(checks))
        self._marked = True

    def stats(self) -> FirmwareStats:
        r = self.release
        return FirmwareStats(version=r.version if r else "", build=r.build if r else None,
                             commit=r.commit if r else "", slot=self.slot, update=self._update)

    @staticmethod
    def _response(cid: str, status: str, firmware: FirmwareProgress | None = None,
                  error: str = "") -> Response:
        return Response(id=cid, command=COMMAND, status=status,  # type: ignore[arg-type]
                        firmware=firmware, error=error)

    @staticmethod
    def _reply_to(route: Reply) -> ReplyTo:
        hexed = route.correlation if _HEX.fullmatch(route.correlation) else ""
        return ReplyTo(route.topic or None, bytes.fromhex(hexed) or None)


def _ended(result: Result, progress: Progress | None) -> FirmwareProgress:
    if result.status == "done":
        return FirmwareProgress(stage="committed", version=result.version, slot=result.slot)
    mine = _of(result.reply.id, progress)
    return FirmwareProgress(stage="rolled_back", slot=result.slot,
                            version=mine.version if mine is not None else "")


def _of(cid: str, progress: Progress | None) -> Progress | None:
    return progress if progress is not None and progress.id == cid else None


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """Changes with every write: each is a new file renamed over the old one."""
    try:
        return (st := os.stat(path)).st_ino, st.st_mtime_ns, st.st_size
    except OSError:
        return None


def booted_slot(cmdline: Path = Path("/proc/cmdline")) -> str:
    """The root slot the kernel was started with ("" when not an A/B card)."""
    try:
        text = cmdline.read_text()
        return slot_from_cmdline(text, slot_partuuids(text)).value
    except (OSError, BootControlError):
        return ""
