"""The node's config file as pydantic models, one per section.

Every model forbids unknown keys, so a typo in a technician's file is an error, not a
silently ignored setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from contract.link import TlsSection
from contract.payloads import Location, NodeId
from edge.config.base import Section
from edge.config.pole import (
    CALL_BUTTON,
    ClimateRule,
    FlapSection,
    GpsSection,
    HealthSection,
    ModbusSection,
    OutputPin,
    PtzSection,
)
from edge.config.recording import RecordingSection
from edge.config.vision import CameraSection, DetectorSection, VisionSection

Port = Annotated[int, Field(ge=1, le=65535)]
GpioPin = Annotated[int, Field(ge=0, le=53, description="BCM GPIO number")]


class NodeSection(Section):
    id: NodeId
    site: str = Field(min_length=1, description="Human-readable place, as dispatch names it")
    location: Location


class HubSection(Section):
    host: str = Field(min_length=1, description="Hub broker host name or address")
    port: Port = 8883
    tls: TlsSection | None = Field(
        default=None, description="Mutual TLS files; null only for a broker on loopback"
    )
    keepalive_s: Annotated[int, Field(ge=2, le=600)] = 10
    reconnect_min_s: Annotated[float, Field(gt=0, le=60)] = 0.5
    reconnect_max_s: Annotated[float, Field(gt=0, le=3600)] = 30.0

    @model_validator(mode="after")
    def _backoff_order(self) -> HubSection:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError(
                f"reconnect_max_s ({self.reconnect_max_s}) must not be below "
                f"reconnect_min_s ({self.reconnect_min_s})"
            )
        return self


class ButtonPin(Section):
    pin: GpioPin
    pull_up: bool = Field(default=True, description="True: the switch pulls the pin to ground")


class LedPin(Section):
    pin: GpioPin
    active_high: bool = True


class InputPin(Section):
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")] = Field(
        description="What the contact is in the field: tamper, door, ..."
    )
    pin: GpioPin
    pull_up: bool | None = Field(default=True, description="True: the contact closes to "
                                 "ground against the internal pull-up; null: an external "
                                 "resistor (say the active level with active_high)")
    active_high: bool | None = Field(
        default=None, description="Which level means the condition is present; null: the "
        "contact closes to active (low with pull_up). true with pull_up: a normally-closed "
        "contact, active when it opens")
    role: Literal["tamper", "door", "motion", "on_battery", "battery_low", "other"] = Field(
        default="other", description="What the input means to the node's health: on_battery "
        "and battery_low make it degraded while active")
    alert: bool = Field(default=True, description="Raise an alert when the input activates")

    @model_validator(mode="after")
    def _level_known(self) -> InputPin:
        if self.pull_up is None and self.active_high is None:
            raise ValueError(f"input {self.name}: without the internal pull-up (pull_up: null) "
                             "say which level is active (active_high: true or false)")
        return self


class GpioSection(Section):
    pin_factory: Literal["lgpio", "rpigpio", "pigpio", "native", "mock"] | None = Field(
        default=None,
        description="gpiozero pin factory; null = GPIOZERO_PIN_FACTORY or gpiozero's default",
    )
    simulator_socket: Path | None = Field(
        default=None,
        description="With the mock factory: a unix socket through which the demo and tests "
        "drive the simulated pins",
    )
    call_button: ButtonPin
    call_led: LedPin
    inputs: list[InputPin] = Field(default_factory=list)
    flap: FlapSection = Field(default_factory=FlapSection)
    outputs: list[OutputPin] = Field(default_factory=list)

    @model_validator(mode="after")
    def _pins_unique(self) -> GpioSection:
        used: dict[int, str] = {}
        named = [("call_button", self.call_button.pin), ("call_led", self.call_led.pin)]
        named += [(f"inputs.{i.name}", i.pin) for i in self.inputs]
        named += [(f"outputs.{o.name}", o.pin) for o in self.outputs]
        for name, pin in named:
            if pin in used:
                raise ValueError(f"GPIO {pin} is used by both {used[pin]} and {name}")
            used[pin] = name
        for kind, names in (("input", [i.name for i in self.inputs]),
                            ("output", [o.name for o in self.outputs])):
            if len(set(names)) != len(names):
                raise ValueError(f"{kind} names must be unique, got {names}")
        if CALL_BUTTON in {i.name for i in self.inputs}:
            raise ValueError(f"an input cannot be named {CALL_BUTTON!r}: that is the button")
        sources = self.alert_sources
        for out in self.outputs:
            unknown = sorted(set(out.on_alert_s) - sources)
            if unknown:
                raise ValueError(f"outputs.{out.name}.on_alert_s: no alert source named "
                                 f"{', '.join(unknown)}; sources are {', '.join(sorted(sources))}")
        if self.simulator_socket is not None and self.pin_factory != "mock":
            raise ValueError("simulator_socket needs pin_factory: mock (it drives simulated pins)")
        return self

    @property
    def alert_sources(self) -> set[str]:
        """What can raise an alert: the call button and every input that alerts."""
        return {CALL_BUTTON} | {i.name for i in self.inputs if i.alert}


class TimingSection(Section):
    debounce_ms: Annotated[int, Field(ge=1, le=1000)] = 30
    long_press_s: Annotated[float, Field(gt=0, le=60)] = 3.0
    stuck_after_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    ack_timeout_s: Annotated[float, Field(gt=0, le=600)] = Field(
        default=15.0, description="Pending call without a hub ack this long: show 'no link'"
    )
    ack_retry_s: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=30.0, description="Re-send a delivered but unacknowledged call this often"
    )
    ack_display_s: Annotated[float, Field(ge=0, le=600)] = Field(
        default=10.0, description="LED stays steady this long after the hub's ack"
    )
    heartbeat_s: Annotated[float, Field(ge=1, le=3600)] = 30.0

    @model_validator(mode="after")
    def _press_order(self) -> TimingSection:
        if self.stuck_after_s <= self.long_press_s:
            raise ValueError(
                f"stuck_after_s ({self.stuck_after_s}) must be longer than "
                f"long_press_s ({self.long_press_s})"
            )
        return self


class CommandsSection(Section):
    """How the node treats the hub's commands. Local only: config.set cannot change it."""

    max_age_s: Annotated[float, Field(ge=10, le=86400)] = Field(
        default=600.0, description="With a synchronised clock, refuse commands issued longer "
        "ago than this (a stale or replayed command)")
    config_trial_s: Annotated[float, Field(ge=10, le=3600)] = Field(
        default=120.0, description="After config.set, restore the previous config unless the "
        "node is healthy and connected again within this long")
    reboot_command: list[str] = Field(
        default_factory=lambda: ["systemctl", "reboot"], min_length=1,
        description="What the reboot command runs")
    rate_per_s: Annotated[float, Field(gt=0, le=1000)] = Field(
        default=20.0, description="Commands taken per second on average; beyond this and "
        "`burst`, a command is refused `busy` (a flood must not crowd out the call path)")
    burst: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=50, description="Commands taken at once before `rate_per_s` applies")
    queue: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=100, description="Commands waiting to be checked, at most; beyond, `busy`")
    busy_answers_per_s: Annotated[float, Field(gt=0, le=1000)] = Field(
        default=5.0, description="`busy` answers per second, at most; past this a refused "
        "command is only counted (commands_dropped), so a flood cannot double itself")


class BacklogSection(Section):
    """The store-and-forward queue for events and telemetry (alerts are never thinned)."""

    max_messages: Annotated[int, Field(ge=100, le=10_000_000)] = Field(
        default=50_000, description="Events and telemetry kept for the hub; beyond this, "
        "telemetry is thinned, events are still kept")
    telemetry_keep_s: Annotated[float, Field(ge=1, le=86400)] = Field(
        default=60.0, description="When thinning, keep one heartbeat per this many seconds")


class NodeConfig(Section):
    """One pole's controller: who it is, where its hub is, how it is wired."""

    node: NodeSection
    hub: HubSection
    gpio: GpioSection
    timings: TimingSection = Field(default_factory=TimingSection)
    data_dir: Path = Field(
        default=Path("/var/lib/edge"),
        description="Writable state: outbox, identity, recordings (the data partition)",
    )
    cameras: list[CameraSection] = Field(default_factory=list)
    detector: DetectorSection = Field(default_factory=DetectorSection)
    vision: VisionSection = Field(default_factory=VisionSection)
    recording: RecordingSection = Field(default_factory=RecordingSection)
    commands: CommandsSection = Field(default_factory=CommandsSection)
    backlog: BacklogSection = Field(default_factory=BacklogSection)
    climate: list[ClimateRule] = Field(default_factory=list)
    ptz: PtzSection | None = None
    gps: GpsSection | None = None
    modbus: ModbusSection | None = None
    health: HealthSection = Field(default_factory=HealthSection)

    @property
    def recording_dir(self) -> Path:
        """Where segments and their index are kept."""
        return self.recording.dir or self.data_dir / "recordings"

    @property
    def hub_tls(self) -> TlsSection | None:
        """The hub link's TLS files with their paths resolved against data_dir."""
        return self.hub.tls.under(self.data_dir) if self.hub.tls is not None else None

    @property
    def identity_dir(self) -> Path:
        """The node's own keys (made here, never copied off the node)."""
        return self.data_dir / "identity"

    @model_validator(mode="after")
    def _cameras_unique(self) -> NodeConfig:
        names = [c.name for c in self.cameras]
        if len(set(names)) != len(names):
            raise ValueError(f"camera names must be unique, got {names}")
        return self

    @model_validator(mode="after")
    def _pole_refs(self) -> NodeConfig:
        outputs = {o.name: o for o in self.gpio.outputs}
        registers = {r.name for r in self.modbus.registers} if self.modbus else set()
        switched: set[str] = set()
        for i, rule in enumerate(self.climate):
            where = f"climate[{i}]"
            if rule.output not in outputs:
                raise ValueError(f"{where}.output: no gpio output named {rule.output!r}")
            if rule.output in switched:
                raise ValueError(f"{where}.output: {rule.output!r} already has a climate rule")
            if outputs[rule.output].on_alert_s:
                raise ValueError(f"{where}.output: {rule.output!r} is switched by alerts "
                                 "(on_alert_s); a fan or heater needs a relay of its own")
            if rule.sensor != "soc" and rule.sensor not in registers:
                raise ValueError(f"{where}.sensor: {rule.sensor!r} is neither 'soc' nor a "
                                 "modbus register")
            switched.add(rule.output)
        if self.ptz is not None:
            unknown = sorted(set(self.ptz.alert_presets) - self.gpio.alert_sources)
            if unknown:
                raise ValueError(f"ptz.alert_presets: no alert source named "
                                 f"{', '.join(unknown)}")
        return self
