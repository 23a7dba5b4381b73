"""Hub commands, received in the main process: checked here, carried out elsewhere.

Every message on `poles/<node>/cmd/<name>` gets an answer on the response topic (see
contract/commands.py): `rejected` with what was wrong for anything oversized,
malformed, unknown or stale; `duplicate` with the first answer for an id seen before;
`accepted` at once for a command that takes time, then `done` or `failed`. Checking runs on
the uplink's network thread and never blocks; the work runs on one command thread, and a
clip export in a child process, so neither the call button nor the uplink waits for it.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from pydantic import TypeAdapter, ValidationError

from contract.commands import (
    COMMANDS,
    MAX_CLIP_S,
    MAX_COMMAND_BYTES,
    Check,
    ClipRequest,
    ClipResult,
    Command,
    CommandId,
    ConfigSet,
    FirmwareUpdate,
    Reboot,
    Response,
    Selftest,
    TelemetryInterval,
)
from contract.topics import NodeTopics
from edge import clock
from edge.config.loader import ConfigError, parse_config
from edge.config.model import NodeConfig
from edge.config.trial import ConfigTrial, TrialError, changed, sha256_of
from edge.counters import Counters
from edge.uplink.client import ReplyTo
from edge.uplink.commandlog import CommandLog, CommandLogError
from edge.uplink.firmware import FirmwareDesk

log = logging.getLogger(__name__)

MAX_QUEUED = 8  # clip requests waiting for the exporter; more are refused, not piled up
MAX_FUTURE_S = 60.0  # a command issued this far ahead of a synchronised clock is refused
_ID: TypeAdapter[str] = TypeAdapter(CommandId)


class Link(Protocol):
    """The uplink, as the command desk needs it."""

    def publish(
        self, topic: str, payload: bytes, *, qos: int, retain: bool = False,
        on_done: Callable[[bool, str], None] | None = None, correlation: bytes | None = None,
    ) -> None: ...


class NodeControl(Protocol):
    """What commands may ask of the running node."""

    def selftest(self) -> list[Check]: ...
    def set_heartbeat(self, interval_s: float, for_s: float | None) -> None: ...
    def restart(self, why: str) -> None: ...


class CommandDesk:
    def __init__(
        self, cfg: NodeConfig, topics: NodeTopics, link: Link, counters: Counters,
        control: NodeControl, *, config_path: Path | None = None,
        synced: Callable[[], bool] = clock.clock_synced,
    ) -> None:
        self.cfg, self.topics, self.link, self.counters = cfg, topics, link, counters
        self.control = control
        self.config_path = config_path
        self.trial = ConfigTrial(config_path) if config_path is not None else None
        self.firmware: FirmwareDesk | None = None  # the node plugs in its own
        self._synced = synced
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._queued = 0
        self._work = ThreadPoolExecutor(max_workers=1, thread_name_prefix="commands")
        self._closing = threading.Event()
        self._prefix = topics.cmd("")
        self.log: CommandLog | None
        try:
            self.log = CommandLog(cfg.data_dir / "commands.sqlite")
        except Exception as e:  # commands are refused until the disk allows; alerts go on
            log.error("%s: commands will be refused", e)
            self.log = None

    # --- checking (network thread) ---

    def on_message(self, topic: str, payload: bytes, reply: ReplyTo) -> None:
        """Answer at once, never block, never raise."""
        self.counters.inc("commands")
        name = topic.removeprefix(self._prefix) if topic.startswith(self._prefix) else ""
        if len(payload) > MAX_COMMAND_BYTES:
            self._reject(reply, "", name, f"command is {len(payload)} bytes; at most "
                         f"{MAX_COMMAND_BYTES} are read")
            return
        try:
            data = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            self._reject(reply, "", name, f"not JSON: {e}")
            return
        if not isinstance(data, dict):
            self._reject(reply, "", name, "a command is a JSON object with an id")
            return
        cid = _valid_id(data.get("id"))
        model = COMMANDS.get(name)
        if model is None:
            self._reject(reply, cid, name[:64], f"unknown command {name[:64]!r}; known: "
                         f"{', '.join(COMMANDS)}")
            return
        try:
            command = model.model_validate(data)
        except ValidationError as e:
            self._reject(reply, cid, name, _first_error(e))
            return
        stale = self._stale(command)
        if stale:
            self._reject(reply, command.id, name, stale)
            return
        if self.log is None:
            self._reject(reply, command.id, name, "the node cannot record commands (data "
                         "partition unwritable): refused so that none runs twice")
            return
        try:
            taken = self.log.take(command.id, name)
        except CommandLogError as e:
            self._reject(reply, command.id, name, f"cannot record the command: {e}")
            return
        if taken is not None:
            self._duplicate(reply, command, name, taken.received_at, taken.response)
            return
        self._start(name, command, reply)

    def _stale(self, command: Command) -> str:
        if not self._synced():
            return ""  # an unsynchronised clock cannot judge age; the id log still holds
        age = time.time() - command.issued.timestamp()
        if age > self.cfg.commands.max_age_s:
            return (f"stale: issued {age:.0f} s ago, more than commands.max_age_s "
                    f"({self.cfg.commands.max_age_s:.0f} s)")
        if age < -MAX_FUTURE_S:
            return f"issued {-age:.0f} s in the future by this node's synchronised clock"
        return ""

    def _duplicate(self, reply: ReplyTo, command: Command, name: str, received_at: float,
                   previous: bytes | None) -> None:
        self.counters.inc("commands_duplicate")
        first: Response | None = None
        if previous is not None:
            try:
                first = Response.model_validate_json(previous)
            except ValidationError:
                first = None
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(received_at))
        log.info("command %s (%s) seen before, at %s: not run again", command.id, name, when)
        self._send(reply, Response(
            id=command.id, command=name, status="duplicate", previous=first,
            error=f"id {command.id} was received at {when}; a command runs once per id"))

    def _start(self, name: str, command: Command, reply: ReplyTo) -> None:
        log.info("command %s: %s", name, command.id)
        if isinstance(command, ClipRequest):
            self._clip(command, reply)
            return
        if isinstance(command, Reboot):
            self.answer(reply, Response(id=command.id, command=name, status="accepted"))
        self._work.submit(self._run, name, command, reply)

    # --- carrying out (command thread) ---

    def _run(self, name: str, command: Command, reply: ReplyTo) -> None:
        try:
            if isinstance(command, ConfigSet):
                self._config_set(command, reply)
            elif isinstance(command, Selftest):
                checks = self.control.selftest()
                failed = [c.name for c in checks if not c.ok]
                self.answer(reply, Response(
                    id=command.id, command=name, status="done", checks=checks,
                    error=f"{len(failed)} of {len(checks)} checks failed: {', '.join(failed)}"
                    if failed else ""))
            elif isinstance(command, TelemetryInterval):
                self.control.set_heartbeat(command.interval_s, command.for_s)
                self.answer(reply, Response(id=command.id, command=name, status="done",
                                            interval_s=command.interval_s))
            elif isinstance(command, Reboot):
                self._reboot(command, reply)
            elif isinstance(command, FirmwareUpdate):
                self._firmware(command, reply)
        except Exception as e:  # a bug in one command must not silence the others
            log.exception("command %s (%s) failed", command.id, name)
            self.answer(reply, Response(id=command.id, command=name, status="failed",
                                        error=f"internal error: {e!r}"))

    def _config_set(self, command: ConfigSet, reply: ReplyTo) -> None:
        def fail(status: str, why: str) -> None:
            self.answer(reply, Response(id=command.id, command="config.set",
                                        status=status, error=why))  # type: ignore[arg-type]

        if self.trial is None or self.config_path is None:
            fail("rejected", "this node was started without a config file it may rewrite")
            return
        try:
            text = self.config_path.read_text(encoding="utf-8")
            new_text = changed(text, command.set)
            new_cfg = parse_config(new_text, source="the changed config")
        except TrialError as e:
            fail("rejected", str(e))
            return
        except ConfigError as e:
            fail("rejected", "; ".join(e.problems)[:1000])
            return
        except OSError as e:
            fail("failed", f"cannot read {self.config_path.name}: {e}")
            return
        if new_cfg == self.cfg:
            self.answer(reply, Response(id=command.id, command="config.set", status="done",
                                        error="no change", config_sha256=sha256_of(
                                            self.config_path)))
            return
        trial_s = command.trial_s or self.cfg.commands.config_trial_s
        try:
            sha = self.trial.begin(command.id, new_text, trial_s=trial_s,
                                   reply_topic=reply.topic, correlation=reply.correlation)
        except TrialError as e:
            fail("rejected", str(e))
            return
        except OSError as e:
            fail("failed", f"cannot write the config: {e}")
            return
        self.answer(reply, Response(
            id=command.id, command="config.set", status="accepted", config_sha256=sha,
            error=f"restarting with it; the previous config comes back unless the node is "
            f"healthy and connected within {trial_s:.0f} s"))
        self.control.restart(f"config change {command.id}")

    def _firmware(self, command: FirmwareUpdate, reply: ReplyTo) -> None:
        if self.firmware is None:
            self._reject(reply, command.id, "firmware.update", "this node takes no firmware "
                         "updates (no firmware desk)")
            return
        response = self.firmware.start(command, reply)
        if response.status == "rejected":
            self._reject(reply, command.id, "firmware.update", response.error)
        else:
            self.answer(reply, response)

    def _reboot(self, command: Reboot, reply: ReplyTo) -> None:
        log.warning("reboot asked by the hub (%s) in %.0f s: %s", command.id, command.delay_s,
                    command.reason or "no reason given")
        if self._closing.wait(command.delay_s):
            return
        argv = self.cfg.commands.reboot_command
        try:
            done = subprocess.run(argv, capture_output=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            why = f"{argv[0]}: {e}"
        else:
            if done.returncode == 0:
                self.answer(reply, Response(id=command.id, command="reboot", status="done"))
                return
            err = done.stderr.decode(errors="replace").strip().splitlines()
            why = f"{' '.join(argv)} exited {done.returncode}: {err[-1] if err else ''}"
        log.error("reboot failed: %s", why)
        self.answer(reply, Response(id=command.id, command="reboot", status="failed",
                                    error=why))

    def _clip(self, request: ClipRequest, reply: ReplyTo) -> None:
        name = "clip.request"
        cameras = {c.name for c in self.cfg.cameras}
        if request.camera not in cameras:
            self._reject(reply, request.id, name, f"no camera {request.camera!r} on this "
                         f"node; it has {', '.join(sorted(cameras)) or 'none'}")
            return
        if request.end.timestamp() > time.time() + MAX_CLIP_S:
            self._reject(reply, request.id, name, "the window ends more than an hour from "
                         "now (by the node's clock); ask when it is over")
            return
        if not self.cfg.recording.enabled:
            self._reject(reply, request.id, name, "recording is disabled on this node")
            return
        from edge.record.delivery import ClipJob, deliver  # the child imports the video side

        sync = clock.sync_state()

        job = ClipJob(
            request_id=request.id, node_id=self.cfg.node.id, camera=request.camera,
            start=request.start.timestamp(), end=request.end.timestamp(),
            upload_url=request.upload_url, manifest_url=request.manifest_url,
            recordings=self.cfg.recording_dir, identity=self.cfg.identity_dir,
            hold_days=self.cfg.recording.retention_days.alert, resumable=request.resumable,
            segment_s=self.cfg.recording.segment_s, clock_synced=sync.synced,
            clock_source=sync.source, clock_offset_s=sync.offset_s,
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
            self._reject(reply, request.id, name, f"{MAX_QUEUED} clip requests are already "
                         "waiting; ask again later")
            return
        self.answer(reply, Response(id=request.id, command=name, status="accepted"))
        future.add_done_callback(lambda f: self._clip_done(request, reply, f))

    def _clip_done(self, request: ClipRequest, reply: ReplyTo,
                   future: Future[dict[str, Any]]) -> None:
        with self._lock:
            self._queued -= 1
        try:
            result = future.result()
        except Exception as e:  # the child died (killed, out of memory): say so
            result = {"ok": False, "error": f"the export process failed: {e!r}"}
        name = "clip.request"
        if result.get("ok"):
            self.counters.inc("clips_delivered")
            log.info("clip %s (camera %s) delivered", request.id, request.camera)
            response = Response(id=request.id, command=name, status="done",
                                clip=ClipResult.model_validate(result["clip"]))
        else:
            self.counters.inc("clips_failed")
            response = Response(id=request.id, command=name, status="failed",
                                error=str(result.get("error", "unknown")))
        self.answer(reply, response)

    # --- answering ---

    def _reject(self, reply: ReplyTo, cid: str, name: str, why: str) -> None:
        self.counters.inc("commands_rejected")
        log.warning("command %r (%s) rejected: %s", cid, name or "?", why)
        self.answer(reply, Response(id=cid, command=name, status="rejected", error=why))

    def answer(self, reply: ReplyTo, response: Response) -> None:
        """Send an answer, and remember it as the one a duplicate of this id gets."""
        self._remember(response)
        self._send(reply, response)

    def _remember(self, response: Response) -> None:
        if self.log is None or not response.id or response.status == "duplicate":
            return
        try:
            self.log.answered(response.id, response.to_bytes())
        except CommandLogError as e:
            log.error("%s", e)

    def _send(self, reply: ReplyTo, response: Response) -> None:
        # A response topic the broker's ACL would refuse us is replaced by our own.
        topic = reply.topic if reply.topic and self.topics.is_response_topic(reply.topic) \
            else self.topics.response
        self.link.publish(topic, response.to_bytes(), qos=1, correlation=reply.correlation)

    def prune(self, now: float) -> None:
        if self.log is not None:
            try:
                self.log.prune(now)
            except CommandLogError as e:
                log.error("%s", e)

    def close(self) -> None:
        self._closing.set()
        self._work.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        if self.log is not None:
            self.log.close()


def _valid_id(value: object) -> str:
    """The command's id if it is one, else '' (junk is not echoed back)."""
    try:
        return _ID.validate_python(value)
    except ValidationError:
        return ""


def _first_error(e: ValidationError) -> str:
    err = e.errors(include_url=False)[0]
    where = ".".join(str(p) for p in err["loc"]) or "command"
    return f"{where}: {err['msg']}"[:500]
