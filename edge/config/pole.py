"""Config sections for the pole's hardware beyond the call button: relays and the cabinet's
fan and heater, the PTZ head and its patrol, the GPS receiver, the RS-485 Modbus sensors,
and the health thresholds.

Serial ports are written as the node opens them: a device path (best a stable
/dev/serial/by-id/... link, since ttyUSB numbers change with plug order) or a pyserial URL.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from edge.config.base import Section

Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
Seconds = Annotated[float, Field(gt=0, le=86400)]
Baud = Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200]
Preset = Annotated[int, Field(ge=1, le=255, description="Pelco-D preset number")]
Finite = Annotated[float, Field(allow_inf_nan=False)]

# What the call button is called as an alert source; inputs use their own names.
CALL_BUTTON = "call_button"


class FlapSection(Section):
    """An input that changes more often than this is flapping (a loose wire, a failing relay):
    its alerts stop, it is reported once, and it comes back after a quiet window."""

    max_changes: Annotated[int, Field(ge=2, le=1000)] = 10
    window_s: Annotated[float, Field(gt=0, le=3600)] = 60.0


class OutputPin(Section):
    """A relay in the cabinet: floodlight, siren, fan, heater."""

    name: Name
    pin: Annotated[int, Field(ge=0, le=53, description="BCM GPIO number")]
    active_high: bool = Field(default=True, description="False for a relay board that "
                              "switches on a low pin")
    on_alert_s: dict[str, Seconds] = Field(
        default_factory=dict,
        description="Switch on for this many seconds when an alert comes from this source "
        "('call_button' or an input's name), e.g. {call_button: 300} for the floodlight")


class ClimateRule(Section):
    """A fan or heater switched by a temperature, with hysteresis."""

    output: Name = Field(description="The relay (gpio.outputs) it switches")
    mode: Literal["cool", "heat"] = Field(description="cool: a fan, on above on_at_c; "
                                          "heat: a heater, on below on_at_c")
    on_at_c: Finite
    off_at_c: Finite
    sensor: Name = Field(default="soc", description="'soc' for the SoC's temperature, or a "
                         "Modbus register's name (cabinet temperature)")
    stale_after_s: Seconds = Field(default=120.0, description="Without a reading this long: "
                                   "a fan goes on, a heater off")

    @model_validator(mode="after")
    def _hysteresis(self) -> ClimateRule:
        if self.mode == "cool" and not self.on_at_c > self.off_at_c:
            raise ValueError(f"a cooling rule switches on above off: on_at_c ({self.on_at_c}) "
                             f"must be higher than off_at_c ({self.off_at_c})")
        if self.mode == "heat" and not self.on_at_c < self.off_at_c:
            raise ValueError(f"a heating rule switches on below off: on_at_c ({self.on_at_c}) "
                             f"must be lower than off_at_c ({self.off_at_c})")
        return self


class TourStop(Section):
    preset: Preset
    dwell_s: Annotated[float, Field(gt=0, le=3600)]


class PtzSection(Section):
    """A Pelco-D pan/tilt/zoom head on RS-485."""

    port: str = Field(min_length=1, description="Serial port or pyserial URL of the RS-485 "
                      "adapter")
    address: Annotated[int, Field(ge=1, le=255)] = Field(
        default=1, description="The head's Pelco-D address (its DIP switches)")
    baudrate: Baud = 2400
    tour: list[TourStop] = Field(
        default_factory=list, description="Presets visited in turn, forever; empty: the head "
        "stays where it is until an alert moves it")
    alert_presets: dict[str, Preset] = Field(
        default_factory=dict, description="Preset to turn to when an alert comes from this "
        "source ('call_button' or an input's name)")
    resume_after_s: Annotated[float, Field(ge=0, le=86400)] = Field(
        default=120.0, description="After an alert turned the head, resume the tour this "
        "much later")


class GpsSection(Section):
    """An NMEA 0183 GPS receiver: the pole's position and a check of the node's clock."""

    port: str = Field(min_length=1)
    baudrate: Baud = 9600
    stale_after_s: Annotated[float, Field(gt=0, le=600)] = Field(
        default=5.0, description="No valid sentence this long: the receiver counts as silent")


class RegisterSpec(Section):
    """One value on the Modbus bus, where it lives and how to read it."""

    name: Name
    slave: Annotated[int, Field(ge=1, le=247)]
    kind: Literal["holding", "input"] = "input"
    address: Annotated[int, Field(ge=0, le=65535)]
    type: Literal["int16", "uint16", "int32", "uint32", "float32"] = "uint16"
    scale: Finite = Field(default=1.0, description="Raw × scale = value in unit (0.1 for "
                          "tenths of a degree)")
    unit: str = Field(default="", max_length=16)
    word_order: Literal["big", "little"] = "big"
    low: Finite | None = Field(default=None, description="Below this the node reports "
                               "itself degraded")
    high: Finite | None = Field(default=None, description="Above this the node reports "
                                "itself degraded")

    @model_validator(mode="after")
    def _range(self) -> RegisterSpec:
        if self.low is not None and self.high is not None and self.low >= self.high:
            raise ValueError(f"register {self.name}: low ({self.low:g}) must be below high "
                             f"({self.high:g})")
        return self


class ModbusSection(Section):
    """Modbus RTU sensors on one RS-485 adapter: cabinet climate, a smart UPS..."""

    port: str = Field(min_length=1)
    baudrate: Baud = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    timeout_s: Annotated[float, Field(gt=0, le=10)] = 0.5
    retries: Annotated[int, Field(ge=0, le=5)] = 1
    poll_s: Annotated[float, Field(ge=1, le=3600)] = 10.0
    registers: list[RegisterSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _names_unique(self) -> ModbusSection:
        names = [r.name for r in self.registers]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"register names must be unique; repeated: {', '.join(repeated)}")
        return self


class HealthSection(Section):
    """When the node calls itself degraded or failed in its retained status."""

    sample_s: Annotated[float, Field(ge=1, le=600)] = Field(
        default=5.0, description="How often the platform (temperature, disk...) is read")
    soc_temp_warn_c: Annotated[float, Field(ge=40, le=120)] = 80.0
    soc_temp_fail_c: Annotated[float, Field(ge=40, le=125)] = 90.0
    disk_free_warn_pct: Annotated[float, Field(ge=0, le=100)] = 10.0
    disk_free_fail_pct: Annotated[float, Field(ge=0, le=100)] = 2.0
    wear_warn_pct: Annotated[int, Field(ge=10, le=110)] = Field(
        default=80, description="Card or eMMC life used, where the card reports it")

    @model_validator(mode="after")
    def _order(self) -> HealthSection:
        if self.soc_temp_fail_c <= self.soc_temp_warn_c:
            raise ValueError(f"soc_temp_fail_c ({self.soc_temp_fail_c}) must be above "
                             f"soc_temp_warn_c ({self.soc_temp_warn_c})")
        if self.disk_free_fail_pct >= self.disk_free_warn_pct:
            raise ValueError(f"disk_free_fail_pct ({self.disk_free_fail_pct}) must be below "
                             f"disk_free_warn_pct ({self.disk_free_warn_pct})")
        return self
