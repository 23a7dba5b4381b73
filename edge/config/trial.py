"""A config change from the hub, on trial until the node proves itself with it.

config.set writes the new file atomically next to a copy of the old one
(`<config>.last-good`) and a marker (`<config>.trial.json`) saying which command asked for
it, where to answer and until when the trial runs; then the node restarts with it. A node
that is healthy and connected before the deadline commits (the marker goes). One that is
not, or whose new file does not even load, puts the old file back, marks the trial rolled
back with the reason, and restarts; it then answers the command `failed` with that reason.
Every step is a rename, so a power cut at any instant leaves one whole config file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from drivers.storage import sync_dir, write_whole
from firmware.handoff import boot_id

log = logging.getLogger(__name__)

# Keys the hub may not set: who the node is, where its alerts are kept, what it runs.
LOCKED = ("node.id", "data_dir", "commands")


class TrialError(Exception):
    """The change cannot be made; the message says why, for the hub's operator."""


@dataclass(frozen=True)
class Trial:
    command_id: str
    state: Literal["trial", "rolled_back"]
    deadline: float  # CLOCK_MONOTONIC of `boot`: the node re-executes itself, same boot
    reply_topic: str | None
    correlation: str | None  # hex
    sha256: str  # of the file on trial
    reason: str = ""
    boot: str = ""  # the kernel's boot id when the trial began
    trial_s: float = 0.0

    def overdue(self, started: float) -> bool:
        """Whether the trial's time is up, on the monotonic clock so that a step of the wall
        clock neither ends it early nor lets a broken config run an hour longer. After a
        reboot mid-trial (another boot id) the trial gets its full time again from
        `started`, the monotonic time this node process started."""
        now = time.monotonic()
        if self.boot and self.boot == boot_id():
            return now > self.deadline
        return now > started + self.trial_s


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def changed(text: str, changes: dict[str, Any]) -> str:
    """The config file's text with dotted keys set (None removes a key). Raises TrialError
    for a locked key or a path through something that is not a mapping."""
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise TrialError("the node's config file is not a YAML mapping")
    for key, value in changes.items():
        if any(key == k or key.startswith(k + ".") for k in LOCKED):
            raise TrialError(f"{key} cannot be set remotely (locked: {', '.join(LOCKED)})")
        parts = key.split(".")
        where: dict[str, Any] = data
        for i, part in enumerate(parts[:-1]):
            nxt = where.get(part)
            if nxt is None:
                if value is None:
                    break
                nxt = where[part] = {}
            if not isinstance(nxt, dict):
                raise TrialError(f"{'.'.join(parts[:i + 1])} is not a section, cannot set {key}")
            where = nxt
        else:
            if value is None:
                where.pop(parts[-1], None)
            else:
                where[parts[-1]] = value
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


class ConfigTrial:
    def __init__(self, config: Path) -> None:
        self.config = config
        self.last_good = config.with_name(config.name + ".last-good")
        self.marker = config.with_name(config.name + ".trial.json")

    def begin(self, command_id: str, new_text: str, *, trial_s: float,
              reply_topic: str | None, correlation: bytes | None) -> str:
        """Put `new_text` in force (after the restart), on trial. Returns its SHA-256."""
        if self.current() is not None:
            raise TrialError("another config change is on trial; wait for its answer")
        old = self.config.read_bytes()
        write_whole(self.last_good, old)
        new = new_text.encode()
        trial = Trial(command_id, "trial", time.monotonic() + trial_s, reply_topic,
                      correlation.hex() if correlation is not None else None,
                      hashlib.sha256(new).hexdigest(), boot=boot_id(), trial_s=trial_s)
        write_whole(self.marker, json.dumps(asdict(trial)).encode())  # marker before the file:
        write_whole(self.config, new)  # a new file in force always has its trial
        log.info("config change %s on trial for %.0f s (previous file kept as %s)",
                 command_id, trial_s, self.last_good.name)
        return trial.sha256

    def current(self) -> Trial | None:
        """The trial in progress or just rolled back; None if there is none. A marker that
        cannot be read is set aside (and the file in force kept) rather than trusted."""
        try:
            raw = self.marker.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return Trial(**json.loads(raw))
        except (ValueError, TypeError) as e:
            log.error("unreadable config trial marker %s (%s): keeping the config in force",
                      self.marker, e)
            with contextlib.suppress(OSError):
                self.marker.rename(self.marker.with_suffix(".bad"))
            return None

    def commit(self) -> Trial | None:
        trial = self.current()
        if trial is not None and trial.state == "trial":
            self.finish()
            log.info("config change %s committed", trial.command_id)
        return trial

    def roll_back(self, reason: str) -> Trial | None:
        """Put the previous file back; the next start answers the command `failed`."""
        trial = self.current()
        if trial is None or trial.state != "trial":
            return trial
        if self.last_good.exists():
            write_whole(self.config, self.last_good.read_bytes())
        rolled = Trial(**{**asdict(trial), "state": "rolled_back", "reason": reason})
        write_whole(self.marker, json.dumps(asdict(rolled)).encode())
        log.error("config change %s rolled back: %s", trial.command_id, reason)
        return rolled

    def finish(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.marker.unlink()
        sync_dir(self.marker.parent)
