"""Telemetry of the pole's hardware beyond the call button: cabinet inputs and relays, the PTZ
head, the GPS receiver, the Modbus sensors, the platform (SoC, disk, clock), the firmware it
runs (and an update's progress) and the node's health verdict. Part of the heartbeat on
`poles/<node>/telemetry`; the verdict is also in the retained status, an update's progress
also in the answers to `cmd/firmware.update`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

HealthState = Literal["ok", "degraded", "failed"]
ClockSource = Literal["ntp", "gps", "none"]


class _Stats(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputStats(_Stats):
    active: bool = Field(description="The condition is present now: door open, on battery...")
    changes: int = Field(description="Debounced changes since start, reported or not")
    flapping: bool = Field(default=False, description="Changing too often: its alerts are "
                           "held back until it has been quiet for the flap window")
    suppressed: int = Field(default=0, description="Changes not reported because it flapped")


class OutputStats(_Stats):
    on: bool
    activations: int = Field(description="Times switched on since start")
    off_in_s: float | None = Field(default=None, description="A timed activation ends then")
    temperature_c: float | None = Field(
        default=None, description="For a fan or heater: the reading its rule last used")
    reason: str = Field(default="", description="For a fan or heater: why it is in fail-safe")


class PtzStats(_Stats):
    mode: Literal["patrol", "alert", "idle"] = Field(
        description="patrol: walking its tour; alert: held at an alert's preset; idle: no tour")
    preset: int | None = Field(description="The preset the head was last sent to")
    alert_preset: int | None = None
    resume_in_s: float | None = Field(default=None, description="The tour resumes then")
    tours_completed: int = 0
    frames_sent: int
    errors: int = Field(description="Commands that failed (adapter unplugged, port missing)")
    last_error: str | None = None


class GpsStats(_Stats):
    state: Literal["offline", "silent", "no_fix", "fix"]
    lat: float | None = None
    lon: float | None = None
    altitude_m: float | None = None
    quality: int = Field(description="GGA fix quality: 0 none, 1 GPS, 2 DGPS, ...")
    satellites: int | None = None
    hdop: float | None = None
    clock_offset_s: float | None = Field(
        default=None, description="GPS time minus the node's clock, from a recent RMC")
    sentences: int
    bad_checksum: int
    partial: int
    garbage_bytes: int
    disconnects: int
    last_error: str | None = None


class SensorStats(_Stats):
    value: float | None = Field(description="The latest reading; None if none yet")
    unit: str
    ok: bool = Field(description="The latest poll read it")
    errors: dict[str, int] = Field(
        default_factory=dict, description="Failed reads by kind: no_response, bad_reply, "
        "refused, port")
    error: str | None = Field(default=None, description="What went wrong with the latest read")


class PlatformStats(_Stats):
    soc_temp_c: float | None = None
    throttled: list[str] = Field(
        default_factory=list, description="Raspberry Pi firmware flags set now: under_voltage, "
        "freq_capped, throttled, soft_temp_limit")
    throttled_since_boot: list[str] = Field(default_factory=list)
    disk_free_bytes: int | None = None
    disk_total_bytes: int | None = None
    wear_used_pct: int | None = Field(default=None, description="eMMC/card life used (upper "
                                      "bound of the JEDEC estimate), where the card says")
    wear_pre_eol: str | None = None
    clock_synced: bool
    clock_daemon: str | None = Field(default=None, description="chrony or timesyncd")
    clock_source: ClockSource
    clock_offset_s: float | None = Field(default=None, description="GPS time minus the node's")
    system_uptime_s: float | None = None
    load: tuple[float, float, float] | None = None
    mem_available_bytes: int | None = None
    mem_total_bytes: int | None = None
    missing: list[str] = Field(default_factory=list, description="What could not be read")


class Health(_Stats):
    state: HealthState = Field(description="ok; degraded: working, with reasons a crew "
                               "should look at; failed: cannot do its job")
    reasons: list[str] = Field(default_factory=list)


FirmwareStage = Literal["queued", "downloading", "installed", "rebooting", "trial", "committed",
                        "rolled_back", "refused", "failed"]


class FirmwareProgress(_Stats):
    """Where a firmware update stands: in the answers to `cmd/firmware.update` and in the
    heartbeat's `firmware.update`."""

    stage: FirmwareStage = Field(
        description="queued: waiting for the installer; downloading: streaming into the idle "
        "slot; installed: armed, waiting for a reboot (reboot: false); rebooting: into the "
        "slot on trial; trial: running it, not yet healthy; committed: kept; rolled_back: "
        "the boot loader went back to the previous slot; refused: the bundle was not "
        "accepted (see reason); failed: the install could not be done (see the error)")
    bytes: int = Field(default=0, description="Of the image, written so far")
    total: int = Field(default=0, description="The image's size, once known")
    percent: float = 0
    downloaded: int = Field(default=0, description="Bytes of the bundle fetched so far: only "
                            "what the running slot does not already hold")
    reused: int = Field(default=0, description="Bytes of the image copied from the running "
                        "slot instead of being downloaded")
    version: str = Field(default="", description="The bundle's release, once read")
    slot: str = Field(default="", description="The slot the bundle goes into (A or B); "
                      "committed, rolled_back: the slot now running")
    reason: str = Field(default="", description="refused: not_a_bundle, unsigned, "
                        "bad_signature, untrusted_key, wrong_board, older, same_version, "
                        "too_big, tampered, truncated, malformed, busy")


class FirmwareStats(_Stats):
    """The firmware the node runs, from its root filesystem's release file."""

    version: str = Field(default="", description="'' on a system without a release file")
    build: int | None = Field(default=None, description="Commit time of the build (unix)")
    commit: str = ""
    slot: str = Field(default="", description="The root slot booted: A or B ('' if unknown)")
    update: FirmwareProgress | None = Field(
        default=None, description="An update under way, or how the last one ended")
