"""The files through which the node (user `edge`, no device access) and the firmware services
(root) talk, all in the node's data directory under `firmware/`, each written whole by a
rename so that a power cut leaves the old or the new one, never half:

- `request.json` (node → installer): the hub's `firmware.update` command, its reply route.
- `progress.json` (installer → node): what the install is doing, bytes so far, a refusal.
- `pending.json` (installer → commit service): the slot armed for a trial and the command.
- `healthy.json` (node → commit service): the node was healthy in this boot.
- `result.json` (commit service → node): the update's end, committed or rolled back; the
  node answers the command with it and renames it `result.reported.json`.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from drivers.storage import write_whole

REQUEST, PROGRESS, PENDING = "request.json", "progress.json", "pending.json"
HEALTHY, RESULT, REPORTED = "healthy.json", "result.json", "result.reported.json"

T = TypeVar("T", bound=BaseModel)
Stage = Literal["queued", "downloading", "installed", "rebooting", "refused", "failed"]


class _File(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Reply(_File):
    """Where the answer to the command goes (the uplink's reply route)."""

    id: str
    topic: str = ""
    correlation: str = Field(default="", description="hex")


class Request(_File):
    reply: Reply
    url: str
    sha256: str = Field(default="", description="Of the whole bundle file, when the hub gave it")
    reboot: bool = True
    received: float = Field(default_factory=time.time)


class Progress(_File):
    id: str
    stage: Stage
    bytes: int = 0
    total: int = 0
    downloaded: int = Field(default=0, description="Bytes of the bundle fetched so far")
    reused: int = Field(default=0, description="Image bytes copied from the running slot")
    version: str = ""
    slot: str = ""
    reason: str = Field(default="", description="A refusal's code (unsigned, bad_signature, ...)")
    error: str = Field(default="", description="What went wrong, for a person")
    attempt: int = Field(default=1, description="An install cut short starts again")
    time: float = Field(default_factory=time.time)

    @property
    def percent(self) -> float:
        return round(100.0 * self.bytes / self.total, 1) if self.total else 0.0


class Pending(_File):
    reply: Reply
    version: str
    slot: str
    from_slot: str
    from_version: str
    armed: float = Field(default_factory=time.time)


class Healthy(_File):
    boot_id: str
    time: float = Field(default_factory=time.time)
    checks: dict[str, bool] = Field(default_factory=dict)


class Result(_File):
    reply: Reply
    status: Literal["done", "failed"]
    version: str = Field(description="The version now running")
    slot: str = Field(description="The slot now running")
    error: str = ""
    time: float = Field(default_factory=time.time)


def write(folder: Path, name: str, item: BaseModel) -> None:
    """Write `folder/name` whole (see drivers.storage)."""
    folder.mkdir(parents=True, exist_ok=True)
    write_whole(folder / name, item.model_dump_json().encode())


def read(folder: Path, name: str, model: type[T]) -> T | None:
    """The file's contents, or None when it is missing or unreadable (a damaged hand-off
    file is treated as absent; the caller says what that means)."""
    try:
        raw: Any = json.loads((folder / name).read_bytes())
        return model.model_validate(raw)
    except (OSError, ValueError, ValidationError):
        return None


def remove(folder: Path, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        (folder / name).unlink()


def boot_id() -> str:
    """This boot's id from the kernel; a marker from an earlier boot carries another."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""
