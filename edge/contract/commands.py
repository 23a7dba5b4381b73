"""Hub → node commands and the node's responses.

A command arrives on `poles/<node>/command` (QoS 1) as JSON with an `id` the hub chose and
a `command` name; the node answers on `poles/<node>/response` (QoS 1), or on the MQTT 5
response topic the request named if it lies under the node's own topics, echoing the
request's correlation data and `id`. A command that takes time is answered `accepted`
at once and `done` or `failed` when it ends; a malformed one is answered `rejected` with
what was wrong.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from edge.contract.payloads import Message

CommandId = Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]{1,64}$",
                                 description="Chosen by the hub; echoed in every response")]
MAX_CLIP_S = 3600.0  # one request, one hour at most: longer windows are several requests


class ClipRequest(Message):
    """`command: clip` — export a camera's footage of a time window as an MP4 clip with a
    signed evidence manifest, and upload it to `upload_url` with HTTP PUT."""

    id: CommandId
    command: Literal["clip"]
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


class ClipResult(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    bytes: int
    sha256: str
    start: datetime = Field(description="Covered from (the keyframe at or before the request)")
    end: datetime
    gaps: list[tuple[datetime, datetime]] = Field(description="Spans with no footage")
    uploaded_to: str = Field(description="The upload URL without its query string")
    manifest: dict[str, Any] = Field(description="The signed evidence manifest")


class Response(Message):
    """On `poles/<node>/response` (QoS 1): what became of a command."""

    id: str = Field(description="The command's id ('' if it could not be read)")
    command: str
    status: Literal["accepted", "done", "failed", "rejected"]
    error: str = Field(default="", description="Why failed or rejected, for a person")
    clip: ClipResult | None = None
