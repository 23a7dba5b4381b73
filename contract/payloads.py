"""JSON payloads on the node's topics, as pydantic models.

These models are the contract: the node builds its messages from them, the hub console
parses with them, and docs/mqtt-api.asyncapi.yaml is generated from them.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from contract.pole import (
    ClockSource,
    FirmwareStats,
    GpsStats,
    Health,
    HealthState,
    InputStats,
    OutputStats,
    PlatformStats,
    PtzStats,
    SensorStats,
)

NodeId = Annotated[
    str,
    Field(
        pattern=r"^[a-z0-9][a-z0-9-]{0,62}$",
        description="Must be lower-case letters, digits and '-' (e.g. kherson-0042); "
        "it is the MQTT client id and topic segment",
    ),
]
# A UUIDv7 in its canonical text form: time-ordered, unique without coordination.
AlertId = Annotated[
    str,
    Field(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"),
]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = Field(default=1, description="Payload format version")

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()


class Location(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    lat: Annotated[float, Field(ge=-90, le=90)]
    lon: Annotated[float, Field(ge=-180, le=180)]
    description: str = Field(default="", description="Street address or landmark")


class Status(Message):
    """Retained on `poles/<node>/status`. The broker publishes the `offline` last will for
    a node that vanishes; a node that stops cleanly publishes `offline` itself."""

    node: NodeId
    state: Literal["online", "offline"]
    time: AwareDatetime
    boot: str = Field(description="Random id of this run of the node; changes on every start")
    version: str
    site: str
    reason: str = Field(default="", description="Why offline: 'shutdown' or 'connection lost'")
    health: HealthState = Field(default="ok", description="The node's own verdict; updated "
                                "when it changes")
    reasons: list[str] = Field(default_factory=list, description="Why degraded or failed")


class AlertKind(StrEnum):
    CALL = "call"  # a citizen pressed the call-police button
    BUTTON_STUCK = "button_stuck"  # the call button is held down far too long: jammed or taped
    INPUT = "input"  # a cabinet contact (tamper, door, ...) activated
    INPUT_RESTORED = "input_restored"  # that contact is back to normal (door shut, mains back)
    INPUT_FLAPPING = "input_flapping"  # it changes too often; its alerts are held back


class Alert(Message):
    """On `poles/<node>/alert`, QoS 1, from the node's durable outbox. May arrive more than
    once (after an outage or a restart); the hub drops duplicates by `id`."""

    id: AlertId
    seq: Annotated[int, Field(ge=1, description="Per-node sequence number; gaps mean loss")]
    node: NodeId
    kind: AlertKind
    source: str = Field(description="What raised it: 'call_button' or an input's name")
    time: AwareDatetime = Field(description="When it happened, by the node's clock (UTC)")
    clock_synced: bool = Field(description="Whether the node's clock was synchronised then")
    clock_source: ClockSource = Field(
        default="none", description="What vouched for the time: ntp (the kernel is "
        "synchronised), gps (the node's clock agreed with the GPS receiver), none")
    clock_offset_s: float | None = Field(
        default=None, description="GPS time minus the node's clock when raised, if a receiver "
        "reported one: true time = time + clock_offset_s")
    site: str
    location: Location


class Ack(Message):
    """Published by the hub on `poles/<node>/ack` (QoS 1) once dispatch has the alert."""

    alert_id: AlertId
    by: str = Field(default="hub", max_length=64, description="Operator or system that took it")
    time: AwareDatetime


class LinkStats(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    connects: int
    disconnects: int
    connected_since: datetime | None
    refused_connects: int = Field(
        default=0, description="Connections the broker refused (bad certificate, ACL on the will)")
    refused_publishes: int = Field(
        default=0, description="Publishes the broker refused (e.g. 'Not authorized' by its ACL)")
    refused_subscriptions: int = Field(default=0, description="Subscriptions the broker refused")


class OutboxStats(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pending: int = Field(description="Alerts on disk not yet accepted by the broker")
    unacked: int = Field(description="Alerts delivered but not yet acknowledged by the hub")
    events: int = Field(default=0, description="Vision events waiting to be sent")
    telemetry: int = Field(default=0, description="Heartbeats waiting to be sent (this one not "
                           "counted)")
    thinned: int = Field(default=0, description="Heartbeats dropped since start to keep the "
                         "store-and-forward queue in bound (events and alerts never are)")


class RecordingStats(BaseModel):
    """One camera's recording: whether it is writing, and what the disk holds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state: Literal["recording", "idle", "failed"] = Field(
        description="failed: footage is not being written (see reason); idle: camera offline"
    )
    reason: str = Field(default="", description="Why failed: disk full, read-only, no room...")
    mode: Literal["copy", "encode", "annexb", ""] = Field(
        default="", description="copy: the camera's H.264 as it comes; encode: encoded here"
    )
    segments_written: int = Field(description="Segments written since the worker started")
    dropped_packets: int = Field(description="Packets not recorded (disk, keyframe wait)")
    stored_bytes: int | None = Field(default=None, description="All cameras' footage on disk")
    stored_segments: int | None = None
    pinned_bytes: int | None = Field(
        default=None, description="Footage held by alerts, events and legal holds"
    )
    oldest: float | None = Field(default=None, description="Unix time of the oldest footage")
    free_bytes: int | None = Field(default=None, description="Free on the data partition")
    budget_bytes: int | None = Field(default=None, description="Most footage may take")


class CameraStats(BaseModel):
    """One camera's pipeline over the last telemetry period."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    online: bool = Field(description="Frames are arriving")
    reason: str = Field(default="", description="Why offline, as the camera worker saw it")
    capture_fps: float
    processed_fps: float
    skipped_frames: int = Field(description="Frames not processed (detection busy), total")
    inferences_per_frame: float
    inference_ms: float = Field(description="Median detector time per inference")
    events_per_min: float
    restarts: dict[str, int] = Field(description="Worker restarts since start, per worker")
    recording: RecordingStats | None = Field(default=None, description="None: not recorded")


class CertificateStats(BaseModel):
    """The node's client certificate, so the hub can renew it before the node is locked out."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    subject: str = Field(description="Its CN, which the broker takes as the node's user name")
    not_after: datetime
    days_left: float
    expiring: bool = Field(description="30 days or fewer left")


class Heartbeat(Message):
    """Periodic telemetry on `poles/<node>/telemetry`, QoS 0 (a missed one is not resent)."""

    node: NodeId
    time: AwareDatetime
    uptime_s: float
    outbox: OutboxStats
    link: LinkStats
    inputs: dict[str, InputStats] = Field(description="Each cabinet input: state, changes")
    counters: dict[str, int] = Field(
        description="Counts since start: presses, malformed messages, publish errors, ..."
    )
    cameras: dict[str, CameraStats] = Field(
        default_factory=dict, description="Per camera: frame rates, detector load, events"
    )
    certificate: CertificateStats | None = Field(
        default=None, description="The node's TLS client certificate; None without TLS")
    outputs: dict[str, OutputStats] = Field(default_factory=dict, description="Each relay")
    ptz: PtzStats | None = Field(default=None, description="The PTZ head; None: none fitted")
    gps: GpsStats | None = Field(default=None, description="None: no receiver fitted")
    sensors: dict[str, SensorStats] = Field(
        default_factory=dict, description="Each Modbus register by name, with its unit")
    platform: PlatformStats | None = Field(default=None, description="SoC, disk, clock, load")
    health: Health = Field(default_factory=lambda: Health(state="ok"))
    firmware: FirmwareStats | None = Field(default=None, description="The release running, "
                                           "its slot, an update's progress or outcome")


class EventPhase(StrEnum):
    NEW = "new"  # a tracked object appeared
    UPDATE = "update"  # something dispatch cares about changed: zone, loitering, stopped
    END = "end"  # the object is gone


class Event(Message):
    """On `poles/<node>/event`, QoS 1: one tracked object's story from the vision pipeline,
    `new` → `update`s → `end`, all with the same `id`. Boxes are fractions of the frame."""

    id: AlertId = Field(description="The event's id; all phases of one object share it")
    seq: Annotated[int, Field(ge=1, description="Per-node sequence number of event messages: "
                              "the hub can drop a re-sent one by it and see the order")]
    node: NodeId
    camera: str
    phase: EventPhase
    track: int = Field(description="Tracker id of the object, unique per camera run")
    label: str = Field(description="COCO label: person, car, bus, ...")
    score: Annotated[float, Field(ge=0, le=1)]
    box: tuple[float, float, float, float] = Field(description="x1, y1, x2, y2 in 0..1")
    zones: list[str] = Field(description="Zones the object is in now")
    entered: list[str] = Field(description="Zones entered since the previous phase")
    left: list[str] = Field(description="Zones left since the previous phase")
    dwell_s: dict[str, float] = Field(description="Seconds spent in each zone so far")
    loitering: list[str] = Field(description="Zones where the object stayed past loiter_s")
    stationary: bool = Field(description="The object has not moved for a while")
    started: AwareDatetime = Field(description="When the object was first seen")
    time: AwareDatetime
    snapshot: str | None = Field(
        default=None, description="Snapshot kept on the node: <camera>/<event id>.jpg"
    )

