"""The two root services of an update, run by systemd on the node:

- the installer (`edge-firmware install-request`), started by a path unit when the node drops
  `request.json`: downloads the bundle (resuming over broken connections), refuses what is
  not signed for this node, streams the image into the slot not running, arms a trial boot
  of it and reboots;
- the commit service (`edge-firmware commit`), run on every boot: on a trial boot it waits for
  the node to prove itself (the node writes `healthy.json` for this boot), then commits the
  slot; if the node does not within the trial's time, or keeps crashing, it reboots and the
  boot loader counts the try. On a boot that is not a trial it reports how the last update
  ended (committed, or rolled back by the loader) and heals a damaged boot state.

Progress and outcomes go to the node through `firmware.handoff`; the node tells the hub.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from firmware import handoff
from firmware.bootctl import BootControl, BootControlError, Slot
from firmware.bundle import Reader, Refused
from firmware.chunks import SlotIndex
from firmware.http import DownloadError, HttpSource, HttpStream
from firmware.install import Installed, Running, Tally, install
from firmware.keys import TRUSTED_DIR, ReleaseKeyError, load_trusted
from firmware.release import RELEASE_FILE, Release, board, installed

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3  # an install cut short (power, crash) is started again at most this often


@dataclass(frozen=True)
class Node:
    """Where this node keeps what an update needs; tests point these at a scratch tree."""

    state: Path  # <data_dir>/firmware
    slot_device: Callable[[Slot], Path]
    keys: Path = TRUSTED_DIR
    release: Path = RELEASE_FILE
    proc: Path = Path("/")
    reboot: Callable[[list[str]], None] = lambda argv: _run(argv)
    # the node reads progress every 5 s: time for it to tell the hub "rebooting" first
    reboot_grace_s: float = 6.0


def _run(argv: list[str]) -> None:
    # S603: argv is the boot control's fixed reboot command (reboot_argv), no shell
    subprocess.run(argv, check=True, timeout=120)  # noqa: S603


class _Pinned:
    """The bundle read once from its start, hashed on the way (the hub named its SHA-256)."""

    def __init__(self, source: HttpSource) -> None:
        self.source, self.sha = source, hashlib.sha256()

    def open(self, start: int, length: int | None) -> Reader:
        return _Hashed(self.source.open(start, length), self.sha)

    @property
    def transferred(self) -> int:
        return self.source.transferred


class _Hashed:
    def __init__(self, stream: HttpStream, sha: hashlib._Hash) -> None:
        self.stream, self.sha = stream, sha

    def read(self, n: int = -1, /) -> bytes:
        data = self.stream.read(n) or b""
        self.sha.update(data)
        return data

    def close(self) -> None:
        self.stream.close()


def slot_index(node: Node, slot: Slot) -> Path:
    """Where the chunk index of what `slot` holds is kept."""
    return node.state / f"slot-{slot.value}.index"


def _running_index(node: Node, slot: Slot, label: str, chunk_size: int) -> SlotIndex:
    """The running slot's chunk index: kept from its install, or made once by reading it."""
    path = slot_index(node, slot)
    kept = SlotIndex.load(path)
    if kept is not None and kept.label == label and kept.chunk_size == chunk_size:
        return kept
    log.warning("reading slot %s (%s) once to index its chunks", slot, label)
    made = SlotIndex.scan(node.slot_device(slot), label=label, chunk_size=chunk_size)
    with contextlib.suppress(OSError):
        made.save(path)
    return made


@dataclass(frozen=True)
class _Job:
    """One request.json being carried out: the request, which attempt at it this is, and how
    its progress is told to the node."""

    node: Node
    req: handoff.Request
    attempt: int

    @property
    def cid(self) -> str:
        return self.req.reply.id

    def report(self, stage: handoff.Stage, **kw: object) -> None:
        handoff.write(self.node.state, handoff.PROGRESS,
                      handoff.Progress(id=self.cid, stage=stage, attempt=self.attempt, **kw))  # type: ignore[arg-type]

    def finish(self, stage: handoff.Stage, **kw: object) -> str:
        """Report the stage the request ended in, and drop the request."""
        self.report(stage, **kw)
        handoff.remove(self.node.state, handoff.REQUEST)
        log.warning("update %s %s: %s", self.cid, stage, kw.get("error", ""))
        return stage


def install_request(node: Node, boot: BootControl) -> str:
    """Carry out request.json if there is one; returns the stage it ended in ('' if none)."""
    req = handoff.read(node.state, handoff.REQUEST, handoff.Request)
    if req is None:
        handoff.remove(node.state, handoff.REQUEST)  # unreadable: nothing can be answered
        return ""
    last = handoff.read(node.state, handoff.PROGRESS, handoff.Progress)
    if last is not None and last.id == req.reply.id:
        if last.stage in ("refused", "failed", "installed", "rebooting"):
            handoff.remove(node.state, handoff.REQUEST)  # finished before a crash removed it
            return last.stage
        job = _Job(node, req, last.attempt + 1)
    else:
        job = _Job(node, req, 1)
    if job.attempt > MAX_ATTEMPTS:
        return job.finish("failed", error=f"the install was cut short {MAX_ATTEMPTS} times "
                          "(power or crash); ask again once the pole is stable")
    try:
        state = boot.state()
    except BootControlError as e:
        return job.finish("failed", error=f"cannot read the boot state: {e}")
    if state.trial is not None:
        return _on_trial(job, state.trial)
    running = installed(node.release)
    done = _install(job, state.booted, running)
    if isinstance(done, str):
        return done
    return _arm(job, boot, state.booted, running, done)


def _on_trial(job: _Job, trial: Slot) -> str:
    """A request met with a slot on trial: this request's, armed before a power cut cut the
    rest short, or another update's, which must end first."""
    pending = handoff.read(job.node.state, handoff.PENDING, handoff.Pending)
    if pending is not None and pending.reply.id == job.cid and trial.value == pending.slot:
        handoff.remove(job.node.state, handoff.REQUEST)
        return "rebooting"
    return job.finish("refused", reason="busy", error=f"slot {trial} is on trial; an "
                      "update can come once it has been committed or rolled back")


def _progress(job: _Job, slot: Slot) -> Callable[[Tally], None]:
    """The install's progress callback: told to the node at most once a second, and at
    the end."""
    last_report = [0.0]

    def progress(tally: Tally) -> None:
        now = time.monotonic()
        if now - last_report[0] >= 1.0 or tally.done == tally.total:
            last_report[0] = now
            job.report("downloading", bytes=tally.done, total=tally.total, slot=slot.value,
                       downloaded=tally.downloaded, reused=tally.reused)

    return progress


def _install(job: _Job, booted: Slot, running: Release | None) -> Installed | str:
    """Download the bundle and write its image into the slot not running; what was
    installed, or the stage the request ended in when it could not be."""
    node, req = job.node, job.req
    slot = booted.other
    device = node.slot_device(slot)
    job.report("downloading", slot=slot.value)
    # The slot about to be written no longer holds what its kept index says.
    slot_index(node, slot).unlink(missing_ok=True)
    source = HttpSource(req.url)
    # A hub that names the bundle's SHA-256 gets the whole file read and checked; otherwise
    # only what the running slot lacks is fetched (the signature covers every chunk anyway).
    pinned = _Pinned(source) if req.sha256 else None
    here = None if pinned else Running(node.slot_device(booted), functools.partial(
        _running_index, node, booted, running.label() if running else "unknown"))
    try:
        keys = load_trusted(node.keys)
        done = install(pinned or source, device, keys=keys, board=board(node.proc),
                       installed=running, running=here, progress=_progress(job, slot))
    except Refused as e:
        return job.finish("refused", reason=e.reason, error=str(e), slot=slot.value)
    except (DownloadError, ReleaseKeyError) as e:
        return job.finish("failed", error=str(e), slot=slot.value)
    except OSError as e:
        return job.finish("failed", error=f"writing slot {slot} ({device}): {e}",
                          slot=slot.value)
    label = done.manifest.release().label()
    if pinned and pinned.sha.hexdigest() != req.sha256.lower():
        return job.finish("failed", slot=slot.value, error="the bundle's SHA-256 is "
                          f"{pinned.sha.hexdigest()}, not the {req.sha256} the hub named; "
                          f"slot {slot} was written but not armed")
    with contextlib.suppress(OSError):  # without it, the next update reads the slot again
        SlotIndex.of(done.index, label).save(slot_index(node, slot))
    log.warning("update %s: %s installed into slot %s: %d bytes downloaded, %d reused from "
                "slot %s, %d zeros", job.cid, label, slot, done.tally.downloaded,
                done.tally.reused, booted, done.tally.zeroed)
    return done


def _arm(job: _Job, boot: BootControl, booted: Slot, running: Release | None,
         done: Installed) -> str:
    """Arm a trial boot of the slot just written and, if the hub asked, reboot into it; the
    stage the request ended in."""
    node, slot = job.node, booted.other
    label = done.manifest.release().label()
    handoff.write(node.state, handoff.PENDING, handoff.Pending(
        reply=job.req.reply, version=label, slot=slot.value, from_slot=booted.value,
        from_version=running.label() if running is not None else "unknown"))
    try:
        boot.start_trial(slot)
    except BootControlError as e:
        _disarm(job, boot, slot)
        return job.finish("failed", error=f"installed, but the trial could not be armed: {e}",
                          version=label, slot=slot.value)
    size = done.manifest.image_size
    moved = {"downloaded": done.tally.downloaded, "reused": done.tally.reused}
    if not job.req.reboot:
        return job.finish("installed", bytes=size, total=size, version=label, slot=slot.value,
                          **moved)
    job.finish("rebooting", bytes=size, total=size, version=label, slot=slot.value, **moved)
    log.warning("update %s: rebooting into slot %s (%s) on trial", job.cid, slot, label)
    time.sleep(node.reboot_grace_s)
    node.reboot(boot.reboot_argv())
    return "rebooting"


def _disarm(job: _Job, boot: BootControl, slot: Slot) -> None:
    """Cancel a trial of `slot` that could not be armed whole."""
    try:
        boot.abandon()  # copy 1 may hold the trial already: the next boot must not try it
        handoff.remove(job.node.state, handoff.PENDING)
    except BootControlError as again:
        log.error("update %s: the half-armed trial of slot %s could not be cancelled "
                  "either: %s", job.cid, slot, again)
        with contextlib.suppress(BootControlError):
            if boot.state().trial is None:
                handoff.remove(job.node.state, handoff.PENDING)
        # else pending.json stays: the commit service reports how the trial ends


def commit(node: Node, boot: BootControl, *, timeout_s: float, max_restarts: int = 3,
           restarts: Callable[[], int] | None = None, poll_s: float = 1.0,
           say: Callable[[str], None] = print) -> str:
    """Run once per boot. Returns what happened: 'committed', 'reported', 'healed', 'idle',
    or 'rebooting' (the trial failed this boot)."""
    state = boot.state()
    pending = handoff.read(node.state, handoff.PENDING, handoff.Pending)
    if state.trial is None:
        outcome = "idle"
        if state.damaged:
            say(f"boot state damaged ({state.damaged}); rewriting it for slot {state.booted}")
            boot.commit()
            outcome = "healed"
        asked = handoff.read(node.state, handoff.REQUEST, handoff.Request)
        if pending is not None and (asked is None or asked.reply.id != pending.reply.id):
            _report_end(node, boot, pending, state.booted)
            outcome = "reported"
        # else: cut between pending.json and arming; the installer runs that request again
        return outcome
    if state.trial != state.booted:
        say(f"slot {state.trial} is armed for a trial from slot {state.booted}; not this boot")
        return "idle"
    say(f"trial boot of slot {state.booted} ({state.tries} of {state.limit}): waiting up to "
        f"{timeout_s:.0f} s for the node to prove itself healthy")
    me = handoff.boot_id()
    deadline = time.monotonic() + timeout_s
    why = f"the node was not healthy within {timeout_s:.0f} s"
    while time.monotonic() < deadline:
        mark = handoff.read(node.state, handoff.HEALTHY, handoff.Healthy)
        if mark is not None and mark.boot_id == me:
            say(f"committing slot {state.booted}: the node is healthy ({_checks(mark)})")
            boot.commit()
            say(f"committed slot {state.booted}")
            if pending is not None:
                _report_end(node, boot, pending, state.booted)
            handoff.remove(node.state, handoff.HEALTHY)
            return "committed"
        if restarts is not None and restarts() >= max_restarts:
            why = f"the node restarted {max_restarts} times"
            break
        time.sleep(poll_s)
    say(f"slot {state.booted} failed its trial boot {state.tries} of {state.limit}: {why}; "
        "rebooting")
    node.reboot(["systemctl", "reboot"])
    return "rebooting"


def _checks(mark: handoff.Healthy) -> str:
    return ", ".join(f"{k} ok" for k, v in mark.checks.items() if v) or "checks passed"


def _report_end(node: Node, boot: BootControl, pending: handoff.Pending, booted: Slot) -> None:
    """The update is over: the slot it went to is running and committed, or the loader went
    back. Written before pending.json goes, so a power cut in between reports it twice at
    worst (the node answers once per command id)."""
    running = installed(node.release)
    now = running.label() if running is not None else "unknown"
    if booted.value == pending.slot:
        result = handoff.Result(reply=pending.reply, status="done", version=now,
                                slot=booted.value)
    else:
        result = handoff.Result(
            reply=pending.reply, status="failed", version=now, slot=booted.value,
            error=f"rolled back: {pending.version} in slot {pending.slot} did not prove "
            f"healthy in its trial boots; the boot loader went back to slot {booted.value} "
            f"({now})")
    handoff.write(node.state, handoff.RESULT, result)
    handoff.remove(node.state, handoff.PENDING)
