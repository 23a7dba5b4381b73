"""The cabinet's fan and heater: each climate rule switches its relay from a temperature, the
SoC's or a Modbus sensor's, with hysteresis (a fan on when hot, a heater on when cold).

Without a fresh reading a fan fails on and a heater off, and a crew is told which sensor
went quiet. A Modbus reading counts as fresh for two polls (`thermostat_age_s`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

from drivers.gpio import Relay, Thermostat
from edge.config.model import NodeConfig

if TYPE_CHECKING:
    from edge.pole.modbus import SensorPoller


class Climate:
    """The climate rules of the config, each driving its relay."""

    def __init__(self, cfg: NodeConfig, relays: Mapping[str, Relay]) -> None:
        self._max_age_s = thermostat_age_s(cfg)
        self.thermostats: dict[str, tuple[Thermostat, str]] = {}  # output → (rule, sensor)
        for rule in cfg.climate:
            self.thermostats[rule.output] = (Thermostat(
                relays[rule.output], mode=rule.mode, on_at_c=rule.on_at_c,
                off_at_c=rule.off_at_c, stale_after_s=rule.stale_after_s), rule.sensor)

    @property
    def by_output(self) -> dict[str, Thermostat]:
        """The rule switching each relay that has one."""
        return {output: thermostat for output, (thermostat, _) in self.thermostats.items()}

    def regulate(self, soc_temp_c: float | None, sensors: SensorPoller | None) -> None:
        """Feed each fan and heater its temperature (the SoC's or a Modbus sensor's)."""
        for thermostat, sensor in self.thermostats.values():
            if sensor == "soc":
                temp = soc_temp_c
            elif sensors is not None:
                temp = sensors.value(sensor, self._max_age_s)
            else:
                temp = None
            thermostat.update(temp)

    def problems(self) -> list[str]:
        """A fan or heater left fail-safe for want of a reading."""
        # Reasons hold no measured values (those are in telemetry): a verdict that changed
        # with every reading would re-publish the retained status at every sample.
        return [f"{name}: no reading from {sensor}, fail-safe "
                f"{'on' if thermostat.on else 'off'}"
                for name, (thermostat, sensor) in self.thermostats.items() if thermostat.reason]


def thermostat_age_s(cfg: NodeConfig) -> float:
    """A Modbus reading older than two polls is not used for the fan or heater."""
    return 2 * cfg.modbus.poll_s + 1 if cfg.modbus is not None else math.inf
