"""The pole's hardware beyond the call button, put together: the cabinet's contact inputs
(inputs.py) and relays (relays.py), the fan and heater (climate.py), the PTZ head and its
patrol (ptz.py), the GPS receiver (gps.py) and the Modbus sensors (modbus.py).

`Cabinet` builds each device from the config, wires alerts to the relays and the PTZ head,
and answers three questions for the node: what to put in telemetry (`stats`), what a crew
should look at (`problems`, for the health verdict) and whether any of its threads died
(`dead`, for the watchdog). A device that fails (a pulled RS-485 adapter, a silent receiver)
is counted and reported; nothing here ever stops the call button or the uplink.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gpiozero.pins import Factory

from contract.pole import GpsStats, InputStats, OutputStats, PtzStats, SensorStats
from drivers.gpio import DigitalInput, Relay, Thermostat
from edge import clock
from edge.config.model import NodeConfig
from edge.pole.climate import Climate, thermostat_age_s
from edge.pole.gps import GpsReceiver
from edge.pole.inputs import AlertFn, Contacts
from edge.pole.modbus import ModbusSensors, SensorPoller
from edge.pole.ptz import Ptz
from edge.pole.relays import Outputs

if TYPE_CHECKING:  # the serial drivers load only for hardware the config lists (pymodbus
    # alone brings asyncio); a pole without them starts smaller
    from drivers.gps import GpsReader
    from drivers.ptz import Patrol, PtzHead

__all__ = ["AlertFn", "Cabinet", "SensorPoller", "thermostat_age_s"]


class Cabinet:
    def __init__(self, cfg: NodeConfig, pins: Factory | None, on_alert: AlertFn,
                 debounce_s: float) -> None:
        self.cfg = cfg
        self._started = clock.monotonic()
        self._ptz: Ptz | None = None
        self._gps: GpsReceiver | None = None
        self._modbus: ModbusSensors | None = None
        # Each part gives back what it claimed if it fails half-built; the parts built
        # before it are closed here.
        self._contacts = Contacts(cfg.gpio, pins, on_alert, debounce_s)
        try:
            self._outputs = Outputs(cfg.gpio.outputs, pins)
        except BaseException:
            self._contacts.close()
            raise
        try:
            self._climate = Climate(cfg, self.relays)
            if cfg.ptz is not None:
                self._ptz = Ptz(cfg.ptz)
            if cfg.gps is not None:
                self._gps = GpsReceiver(cfg.gps, since=self._started)
            if cfg.modbus is not None:
                self._modbus = ModbusSensors(cfg.modbus)
        except BaseException:
            self.close()
            raise

    # --- the devices ---

    @property
    def inputs(self) -> list[DigitalInput]:
        return self._contacts.inputs

    @property
    def relays(self) -> dict[str, Relay]:
        return self._outputs.relays

    @property
    def thermostats(self) -> dict[str, tuple[Thermostat, str]]:
        """Output → (rule, sensor)."""
        return self._climate.thermostats

    @property
    def head(self) -> PtzHead | None:
        return self._ptz.head if self._ptz is not None else None

    @property
    def patrol(self) -> Patrol | None:
        return self._ptz.patrol if self._ptz is not None else None

    @property
    def gps(self) -> GpsReader | None:
        return self._gps.reader if self._gps is not None else None

    @property
    def sensors(self) -> SensorPoller | None:
        return self._modbus.poller if self._modbus is not None else None

    # --- alerts and climate ---

    def on_alert(self, source: str) -> None:
        """An alert came from `source`: switch its relays on, turn the head to its preset."""
        self._outputs.on_alert(source)
        if self._ptz is not None:
            self._ptz.on_alert(source)

    def regulate(self, soc_temp_c: float | None) -> None:
        """Feed each fan and heater its temperature (the SoC's or a Modbus sensor's)."""
        self._climate.regulate(soc_temp_c, self.sensors)

    # --- telemetry, health, watchdog ---

    def input_stats(self) -> dict[str, InputStats]:
        return self._contacts.stats()

    def output_stats(self) -> dict[str, OutputStats]:
        return self._outputs.stats(self._climate.by_output)

    def ptz_stats(self) -> PtzStats | None:
        return self._ptz.stats() if self._ptz is not None else None

    def gps_stats(self) -> GpsStats | None:
        return self._gps.stats() if self._gps is not None else None

    def sensor_stats(self) -> dict[str, SensorStats]:
        return self._modbus.poller.stats() if self._modbus is not None else {}

    def gps_offset_s(self) -> float | None:
        """GPS time minus the node's clock, while the receiver has a fresh one."""
        return self._gps.offset_s() if self._gps is not None else None

    def problems(self) -> list[str]:
        """What makes the pole degraded, in words a crew reads."""
        out = self._contacts.problems() + self._climate.problems()
        for part in (self._ptz, self._gps, self._modbus):
            if part is not None:
                out += part.problems()
        return out

    def dead(self) -> str:
        """A worker thread that died ("" if none): the watchdog must not be fed then."""
        for part in (self._ptz, self._modbus, self._gps):
            if part is not None and (why := part.dead()):
                return why
        return ""

    def close(self) -> None:
        for part in (self._ptz, self._gps, self._modbus):
            if part is not None:
                part.close()
        self._outputs.close()  # off: a restarting node never leaves a siren on
        self._contacts.close()
