"""Hub commands, received in the main process: checked here, carried out elsewhere.

Every message on `poles/<node>/cmd/<name>` gets an answer on the response topic (see
contract/commands.py): `rejected` with what was wrong for anything oversized, nested too
deep, malformed, unknown or stale; `duplicate` with the first answer for an id seen before;
`busy` when the node has no room for it now (see intake.py); `accepted` at once for a command
that takes time, then `done` or `failed`. Checking runs on the intake's thread, never on the
uplink's network thread; the work runs on one command thread, and a clip export in a child
process, so neither the call button nor the uplink waits for it.
"""

from __future__ import annotations

import json
import logging
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from pydantic import TypeAdapter, ValidationError

from contract.commands import (
    COMMANDS,
    MAX_COMMAND_BYTES,
    Check,
    ClipRequest,
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
from edge.budget import QuietLog
from edge.config.model import NodeConfig
from edge.counters import Counters
from edge.uplink.client import ReplyTo
from edge.uplink.clip_requests import ClipRequests
from edge.uplink.commandlog import CommandLog, CommandLogError
from edge.uplink.config_change import ConfigChange
from edge.uplink.firmware import FirmwareDesk

log = logging.getLogger(__name__)

MAX_DEPTH = 16  # lists and objects in a command nest at most this deep (the models need 4)
MAX_LATER = 8  # commands waiting for the command thread, at most
MAX_FUTURE_S = 60.0  # a command issued this far ahead of a synchronised clock is refused
_ID: TypeAdapter[str] = TypeAdapter(CommandId)

Handler = Callable[[Any, ReplyTo], None]


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
        self.config_change = ConfigChange(cfg, config_path, self.answer, control.restart)
        self.clips = ClipRequests(cfg, counters, self.answer, self._reject)
        self.firmware: FirmwareDesk | None = None  # the node plugs in its own
        self._synced = synced
        self._work = ThreadPoolExecutor(max_workers=1, thread_name_prefix="commands")
        self._closing = threading.Event()
        self._pending_lock = threading.Lock()
        self._pending = 0  # commands handed to the command thread and not finished
        self._quiet = QuietLog(log)
        self._prefix = topics.cmd("")
        # What each command does: quick ones answer on the network thread, the rest run on
        # the command thread, one at a time.
        self._now: dict[type[Command], Handler] = {ClipRequest: self.clips.request,
                                                   Reboot: self._reboot_soon}
        self._later: dict[type[Command], Handler] = {
            ConfigSet: self.config_change.apply, Selftest: self._selftest,
            TelemetryInterval: self._telemetry_interval, Reboot: self._reboot,
            FirmwareUpdate: self._firmware}
        self.log: CommandLog | None
        try:
            self.log = CommandLog(cfg.data_dir / "commands.sqlite")
        except Exception as e:  # commands are refused until the disk allows; alerts go on
            log.error("%s: commands will be refused", e)
            self.log = None

    # --- checking (network thread) ---

    def on_message(self, topic: str, payload: bytes, reply: ReplyTo) -> None:
        """Answer at once, never block, never raise."""
        name = self._name(topic)
        data = self._read(reply, name, payload)
        if data is None:
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
        if type(command) in self._later and self._waiting_to_run() >= MAX_LATER:
            self.counters.inc("commands_busy")
            self._send(reply, Response(id=command.id, command=name, status="busy", error=(
                f"{MAX_LATER} commands are already waiting to run: not taken, send it again "
                "later")))
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

    def busy(self, topic: str, payload: bytes, reply: ReplyTo) -> None:
        """Refuse a command the node has no room for now (see intake.py), quoting its id if
        it can be read cheaply."""
        try:
            data = _parse(payload)
        except ValueError:
            data = None
        cid = _valid_id(data.get("id")) if isinstance(data, dict) else ""
        self._send(reply, Response(id=cid, command=self._name(topic)[:64], status="busy",
                                   error="the node is taking commands more slowly than they "
                                   "come; this one was not read: send it again later"))

    def _name(self, topic: str) -> str:
        return topic.removeprefix(self._prefix) if topic.startswith(self._prefix) else ""

    def _read(self, reply: ReplyTo, name: str, payload: bytes) -> dict[str, Any] | None:
        """The command as a JSON object, or None once it is rejected."""
        try:
            data = _parse(payload)
        except ValueError as e:
            self._reject(reply, "", name, str(e))
            return None
        if not isinstance(data, dict):
            self._reject(reply, "", name, "a command is a JSON object with an id")
            return None
        return data

    def _waiting_to_run(self) -> int:
        with self._pending_lock:
            return self._pending

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
        now = self._now.get(type(command))
        if now is not None:
            now(command, reply)
        if type(command) in self._later:
            with self._pending_lock:
                self._pending += 1
            self._work.submit(self._run, name, command, reply)

    # --- carrying out (command thread) ---

    def _run(self, name: str, command: Command, reply: ReplyTo) -> None:
        try:
            self._later[type(command)](command, reply)
        except Exception as e:  # a bug in one command must not silence the others
            log.exception("command %s (%s) failed", command.id, name)
            self.answer(reply, Response(id=command.id, command=name, status="failed",
                                        error=f"internal error: {e!r}"))
        finally:
            with self._pending_lock:
                self._pending -= 1

    def _selftest(self, command: Selftest, reply: ReplyTo) -> None:
        checks = self.control.selftest()
        failed = [c.name for c in checks if not c.ok]
        self.answer(reply, Response(
            id=command.id, command="selftest", status="done", checks=checks,
            error=f"{len(failed)} of {len(checks)} checks failed: {', '.join(failed)}"
            if failed else ""))

    def _telemetry_interval(self, command: TelemetryInterval, reply: ReplyTo) -> None:
        self.control.set_heartbeat(command.interval_s, command.for_s)
        self.answer(reply, Response(id=command.id, command="telemetry.interval",
                                    status="done", interval_s=command.interval_s))

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

    def _reboot_soon(self, command: Reboot, reply: ReplyTo) -> None:
        self.answer(reply, Response(id=command.id, command="reboot", status="accepted"))

    def _reboot(self, command: Reboot, reply: ReplyTo) -> None:
        log.warning("reboot asked by the hub (%s) in %.0f s: %s", command.id, command.delay_s,
                    command.reason or "no reason given")
        if self._closing.wait(command.delay_s):
            return
        argv = self.cfg.commands.reboot_command
        try:
            done = subprocess.run(argv, capture_output=True, timeout=60, check=False)  # noqa: S603 (the local config's command; the hub cannot set it)
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

    # --- answering ---

    def _reject(self, reply: ReplyTo, cid: str, name: str, why: str) -> None:
        self.counters.inc("commands_rejected")
        self._quiet.warning("rejected", "command %r (%s) rejected: %s", cid, name or "?", why)
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
        self.clips.close()
        if self.log is not None:
            self.log.close()


def _parse(payload: bytes) -> object:
    """JSON within the size and depth a command may have; ValueError says what is wrong."""
    if len(payload) > MAX_COMMAND_BYTES:
        raise ValueError(f"command is {len(payload)} bytes; at most {MAX_COMMAND_BYTES} are read")
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"not JSON: {e}") from e
    except RecursionError:  # nested past the parser's own limit: certainly past ours
        raise ValueError(f"not a command: JSON nested more than {MAX_DEPTH} deep") from None
    if _depth(data) > MAX_DEPTH:
        raise ValueError(f"not a command: JSON nested more than {MAX_DEPTH} deep")
    return data


def _depth(data: object) -> int:
    """How deeply lists and objects nest in `data` (iterative: no recursion to exhaust)."""
    deepest, todo = 0, [(data, 1)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, level)
            if level > MAX_DEPTH:
                return level
            todo.extend((x, level + 1) for x in item)
    return deepest


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
