"""Hub → node commands and the node's responses.

A command arrives on `poles/<node>/cmd/<name>` (QoS 1) as a JSON object with an `id` the
hub chose and the time it was `issued`, plus the command's own fields. The node answers
on `poles/<node>/response` (QoS 1), or on the MQTT 5 response topic the request named if
it lies under the node's own topics, echoing the request's correlation data and `id`.

A command that takes time is answered `accepted` at once and `done` or `failed` when it
ends; anything malformed, unknown, oversized or stale is answered `rejected` with what was
wrong. A command is carried out at most once per id: the same id again (a retry, a
redelivery, a replay) is answered `duplicate` with the outcome of the first.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue, model_validator

from contract.payloads import Message
from contract.pole import FirmwareProgress

CommandId = Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]{1,64}$",
                                 description="Chosen by the hub; echoed in every response")]
MAX_CLIP_S = 3600.0  # one request, one hour at most: longer windows are several requests
MAX_COMMAND_BYTES = 16 * 1024  # a command's payload; anything bigger is refused unread


class Command(Message):
    """What every command carries."""

    id: CommandId
    issued: AwareDatetime = Field(
        description="When the hub issued it (UTC). A node with a synchronised clock refuses "
        "commands older than its commands.max_age_s or more than a minute in the future")


class ClipRequest(Command):
    """`cmd/clip.request` — export a camera's footage of a time window as an MP4 clip with a
    signed evidence manifest, and upload it to `upload_url` with HTTP PUT."""

    camera: str = Field(min_length=1, max_length=32)
    start: AwareDatetime
    end: AwareDatetime
    upload_url: str = Field(pattern=r"^https?://", max_length=2048,
                            description="Where to PUT the clip (e.g. a presigned URL)")
    manifest_url: str | None = Field(
        default=None, pattern=r"^https?://", max_length=2048,
        description="Where to PUT the manifest too; it is in the response either way")
    resumable: bool = Field(
        default=False, description="The upload URL takes resumable PUTs (Content-Range, 308); "
        "otherwise a broken upload starts again from the first byte")

    @model_validator(mode="after")
    def _window(self) -> ClipRequest:
        span = (self.end - self.start).total_seconds()
        if span <= 0:
            raise ValueError("end must be after start")
        if span > MAX_CLIP_S:
            raise ValueError(f"a clip is at most {MAX_CLIP_S:.0f} s; ask for several")
        return self


ConfigKey = Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*$",
                                 max_length=128)]


class ConfigSet(Command):
    """`cmd/config.set` — change settings in the node's config file. Each key is a dotted
    path into the file (`timings.heartbeat_s`); a value of null removes the key (back to
    its default). The new file is validated, written atomically and applied by restarting
    the node; if the node is not healthy and connected again within `trial_s`, the previous
    file is restored. node.id, data_dir and the commands section cannot be set remotely."""

    set: dict[ConfigKey, JsonValue] = Field(min_length=1, max_length=64)
    trial_s: Annotated[float, Field(ge=10, le=3600)] | None = Field(
        default=None, description="Roll back unless healthy within this long "
        "(default: the node's commands.config_trial_s)")


class Selftest(Command):
    """`cmd/selftest` — check the node's parts and report each check."""


class Reboot(Command):
    """`cmd/reboot` — reboot the controller through systemd after `delay_s`."""

    delay_s: Annotated[float, Field(ge=0, le=3600)] = 5.0
    reason: str = Field(default="", max_length=200, description="Logged on the node")


class TelemetryInterval(Command):
    """`cmd/telemetry.interval` — send heartbeats every `interval_s` from now on; with
    `for_s`, only for that long, then back to the configured period. Not persisted: a
    restart returns to the configured period."""

    interval_s: Annotated[float, Field(ge=1, le=3600)]
    for_s: Annotated[float, Field(gt=0, le=86400)] | None = None


class FirmwareUpdate(Command):
    """`cmd/firmware.update` — install the signed bundle at `url` into the root slot the node
    is not running, reboot into it on trial and keep it only if the node proves healthy
    (uplink connected, cameras delivering frames, watchdog fed) within the trial; otherwise
    the boot loader goes back to the running slot by itself."""

    url: str = Field(pattern=r"^https?://", max_length=2048,
                     description="Where to GET the bundle (.sfw); downloads resume over "
                     "broken connections")
    sha256: str | None = Field(
        default=None, pattern=r"^[0-9a-fA-F]{64}$",
        description="SHA-256 of the bundle file; the slot is not armed if it differs")
    reboot: bool = Field(default=True, description="false: install and arm the trial, and "
                         "reboot later with cmd/reboot")


# name on the topic → its model; the node answers `rejected` for any other name
COMMANDS: dict[str, type[Command]] = {
    "clip.request": ClipRequest,
    "config.set": ConfigSet,
    "selftest": Selftest,
    "reboot": Reboot,
    "telemetry.interval": TelemetryInterval,
    "firmware.update": FirmwareUpdate,
}


class ClipResult(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    bytes: int
    sha256: str
    start: datetime = Field(description="Covered from (the keyframe at or before the request)")
    end: datetime
    gaps: list[tuple[datetime, datetime]] = Field(description="Spans with no footage")
    uploaded_to: str = Field(description="The upload URL without its query string")
    manifest: dict[str, Any] = Field(description="The signed evidence manifest")


class Check(BaseModel):
    """One self-test check."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    ok: bool
    detail: str = ""


class Response(Message):
    """On `poles/<node>/response` (QoS 1): what became of a command."""

    id: str = Field(description="The command's id ('' if it could not be read)")
    command: str = Field(description="The command's name, from its topic")
    status: Literal["accepted", "done", "failed", "rejected", "duplicate", "busy"] = Field(
        description="busy: refused unread because commands came faster than the node takes "
        "them; nothing was done, so the same command may be sent again later")
    error: str = Field(default="", description="Why failed, rejected, duplicate or busy, for "
                       "a person")
    clip: ClipResult | None = None
    checks: list[Check] | None = Field(default=None, description="selftest: every check")
    interval_s: float | None = Field(default=None, description="telemetry.interval: now in force")
    config_sha256: str | None = Field(
        default=None, description="config.set: SHA-256 of the config file now in force")
    firmware: FirmwareProgress | None = Field(
        default=None, description="firmware.update: where the update stands (each `accepted` "
        "answer after the first is a progress report)")
    previous: Response | None = Field(
        default=None, description="duplicate: the last answer given to the first command with "
        "this id")
