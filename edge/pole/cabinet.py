"""The pole's hardware beyond the call button: cabinet inputs and relays, the fan and heater,
the PTZ head and its patrol, the GPS receiver and the Modbus sensors.

`Cabinet` builds each device from the config, wires alerts to the relays and the PTZ head,
and answers three questions for the node: what to put in telemetry (`stats`), what a crew
should look at (`problems`, for the health verdict) and whether any of its threads died
(`dead`, for the watchdog). A device that fails (a pulled RS-485 adapter, a silent receiver)
is counted and reported; nothing here ever stops the call button or the uplink.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from gpiozero.pins import Factory

from contract.payloads import AlertKind
from contract.pole import GpsStats, InputStats, OutputStats, PtzStats, SensorStats
from drivers.gpio import DigitalInput, Relay, Thermostat
from edge import clock
from edge.config.model import NodeConfig

if TYPE_CHECKING:  # the serial drivers load only for hardware the config lists (pymodbus
    # alone brings asyncio); a pole without them starts smaller
    from drivers.gps import GpsReader
    from drivers.modbus import SensorBus
    from drivers.ptz import Patrol, PtzHead

log = logging.getLogger(__name__)

# What the cabinet asks the alarm path to raise: (kind, source).
AlertFn = Callable[[AlertKind, str], None]


@dataclass
class _Reading:
    value: float
    unit: str
    at: float  # monotonic


class SensorPoller:
    """Polls the Modbus bus every `poll_s` in its own thread and keeps the latest readings."""

    def __init__(self, bus: SensorBus, poll_s: float) -> None:
        self.bus = bus
        self._poll_s = poll_s
        self._lock = threading.Lock()
        self._latest: dict[str, _Reading] = {}
        self._ok: set[str] = set()
        self._stop = threading.Event()
        self.polls = 0
        self._thread = threading.Thread(target=self._run, name="modbus-poll", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def value(self, name: str, max_age_s: float) -> float | None:
        with self._lock:
            r = self._latest.get(name)
        if r is None or clock.monotonic() - r.at > max_age_s:
            return None
        return r.value

    def stats(self) -> dict[str, SensorStats]:
        errors, last = self.bus.error_counts, self.bus.last_errors
        with self._lock:
            return {
                reg.name: SensorStats(
                    value=self._latest[reg.name].value if reg.name in self._latest else None,
                    unit=reg.unit, ok=reg.name in self._ok,
                    errors={k: v for k, v in errors.get(reg.name, {}).items() if v},
                    error=last.get(reg.name))
                for reg in self.bus.registers
            }

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
        self.bus.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                readings = self.bus.poll_once()
            except Exception:  # the bus counts its own failures; this is a bug, keep polling
                log.exception("Modbus poll on %s failed", self.bus.port)
                readings = {}
            now = clock.monotonic()
            with self._lock:
                self.polls += 1
                self._ok = set(readings)
                for name, r in readings.items():
                    self._latest[name] = _Reading(r.value, r.unit, now)
            self._stop.wait(self._poll_s)


class Cabinet:
    def __init__(self, cfg: NodeConfig, pins: Factory | None, on_alert: AlertFn,
                 debounce_s: float) -> None:
        self.cfg = cfg
        self._on_alert = on_alert
        self._started = clock.monotonic()
        g = cfg.gpio
        self.inputs: list[DigitalInput] = []
        self.relays: dict[str, Relay] = {}
        self.thermostats: dict[str, tuple[Thermostat, str]] = {}  # output → (rule, sensor)
        self.patrol: Patrol | None = None
        self.head: PtzHead | None = None
        self.gps: GpsReader | None = None
        self.sensors: SensorPoller | None = None
        try:
            for spec in g.inputs:
                device = DigitalInput(
                    spec.name, spec.pin, pull_up=spec.pull_up, active_high=spec.active_high,
                    debounce_s=debounce_s, flap_max_changes=g.flap.max_changes,
                    flap_window_s=g.flap.window_s, pin_factory=pins)
                device.when_flapping = self._flapping_handler(spec.name, spec.alert)
                if spec.alert:
                    device.when_activated = self._alert_handler(AlertKind.INPUT, spec.name)
                    device.when_deactivated = self._alert_handler(AlertKind.INPUT_RESTORED,
                                                                  spec.name)
                self.inputs.append(device)
            for out in g.outputs:
                self.relays[out.name] = Relay(out.name, out.pin, active_high=out.active_high,
                                              pin_factory=pins)
            for rule in cfg.climate:
                self.thermostats[rule.output] = (Thermostat(
                    self.relays[rule.output], mode=rule.mode, on_at_c=rule.on_at_c,
                    off_at_c=rule.off_at_c, stale_after_s=rule.stale_after_s), rule.sensor)
            if cfg.ptz is not None:
                from drivers.ptz import Patrol, PtzHead

                p = cfg.ptz
                self.head = PtzHead(p.port, p.address, p.baudrate, open_now=False)
                self.patrol = Patrol(self.head, [(s.preset, s.dwell_s) for s in p.tour])
            if cfg.gps is not None:
                from drivers.gps import GpsReader

                self.gps = GpsReader(cfg.gps.port, cfg.gps.baudrate,
                                     stale_after_s=cfg.gps.stale_after_s)
            if cfg.modbus is not None:
                from drivers.modbus import Register, SensorBus

                m = cfg.modbus
                bus = SensorBus(
                    m.port, [Register(r.name, r.slave, r.kind, r.address, r.type, r.scale,
                                      r.unit, r.word_order) for r in m.registers],
                    baudrate=m.baudrate, parity=m.parity, stopbits=m.stopbits,
                    timeout_s=m.timeout_s, retries=m.retries)
                self.sensors = SensorPoller(bus, m.poll_s)
        except BaseException:
            self.close()
            raise

    # --- alerts ---

    def on_alert(self, source: str) -> None:
        """An alert came from `source`: switch its relays on, turn the head to its preset."""
        for out in self.cfg.gpio.outputs:
            for_s = out.on_alert_s.get(source)
            if for_s is not None:
                self.relays[out.name].on(for_s)
                log.info("%s on for %.0f s (alert from %s)", out.name, for_s, source)
        p = self.cfg.ptz
        if p is not None and self.patrol is not None and source in p.alert_presets:
            preset = p.alert_presets[source]
            self.patrol.pause_for(preset, p.resume_after_s)
            log.info("PTZ head to preset %d for %s, tour resumes in %.0f s", preset, source,
                     p.resume_after_s)

    def _alert_handler(self, kind: AlertKind, name: str) -> Callable[[], None]:
        return lambda: self._on_alert(kind, name)

    def _flapping_handler(self, name: str, alerts: bool) -> Callable[[bool], None]:
        def flapping(on: bool) -> None:
            if on:
                log.warning("input %s is flapping (over %d changes in %.0f s): its changes "
                            "are held back until it is quiet", name,
                            self.cfg.gpio.flap.max_changes, self.cfg.gpio.flap.window_s)
                if alerts:
                    self._on_alert(AlertKind.INPUT_FLAPPING, name)
            else:
                log.info("input %s is quiet again", name)

        return flapping

    # --- climate ---

    def regulate(self, soc_temp_c: float | None) -> None:
        """Feed each fan and heater its temperature (the SoC's or a Modbus sensor's)."""
        for thermostat, sensor in self.thermostats.values():
            if sensor == "soc":
                temp = soc_temp_c
            elif self.sensors is not None:
                temp = self.sensors.value(sensor, thermostat_age_s(self.cfg))
            else:
                temp = None
            thermostat.update(temp)

    # --- telemetry, health, watchdog ---

    def input_stats(self) -> dict[str, InputStats]:
        return {i.name: InputStats(active=i.is_active, changes=i.changes, flapping=i.flapping,
                                   suppressed=i.suppressed) for i in self.inputs}

    def output_stats(self) -> dict[str, OutputStats]:
        stats = {}
        for name, relay in self.relays.items():
            rule = self.thermostats.get(name)
            off_in = relay.off_in_s
            stats[name] = OutputStats(
                on=relay.is_on, activations=relay.activations,
                off_in_s=round(off_in, 1) if off_in is not None else None,
                temperature_c=rule[0].last_temp_c if rule else None,
                reason=rule[0].reason if rule else "")
        return stats

    def ptz_stats(self) -> PtzStats | None:
        if self.patrol is None or self.head is None:
            return None
        s = self.patrol.state
        mode: Literal["patrol", "alert", "idle"] = "idle"
        resume = None
        if s.paused_until is not None:
            mode, resume = "alert", max(0.0, s.paused_until - clock.monotonic())
        elif self.cfg.ptz is not None and self.cfg.ptz.tour:
            mode = "patrol"
        return PtzStats(mode=mode, preset=s.current_preset, alert_preset=s.alert_preset,
                        resume_in_s=round(resume, 1) if resume is not None else None,
                        tours_completed=s.tours_completed, frames_sent=self.head.frames_sent,
                        errors=s.errors, last_error=s.last_error)

    def gps_stats(self) -> GpsStats | None:
        if self.gps is None:
            return None
        s, fix = self.gps.stats, self.gps.fix
        offset = self.gps.clock_offset_s
        return GpsStats(
            state=s.state,  # type: ignore[arg-type]
            lat=fix.latitude if fix else None, lon=fix.longitude if fix else None,
            altitude_m=fix.altitude_m if fix else None, quality=s.quality,
            satellites=s.satellites, hdop=fix.hdop if fix else None,
            clock_offset_s=round(offset, 3) if offset is not None else None,
            sentences=s.sentences, bad_checksum=s.bad_checksum, partial=s.partial,
            garbage_bytes=s.garbage_bytes, disconnects=s.disconnects, last_error=s.last_error)

    def sensor_stats(self) -> dict[str, SensorStats]:
        return self.sensors.stats() if self.sensors is not None else {}

    def gps_offset_s(self) -> float | None:
        """GPS time minus the node's clock, while the receiver has a fresh one."""
        return self.gps.clock_offset_s if self.gps is not None else None

    def problems(self) -> list[str]:
        """What makes the pole degraded, in words a crew reads."""
        out: list[str] = []
        roles = {i.name: i.role for i in self.cfg.gpio.inputs}
        for i in self.inputs:
            if i.flapping:
                out.append(f"input {i.name} flapping")
            elif i.is_active and roles[i.name] == "on_battery":
                out.append(f"on battery ({i.name})")
            elif i.is_active and roles[i.name] == "battery_low":
                out.append(f"battery low ({i.name})")
        # Reasons hold no measured values (those are in telemetry): a verdict that changed
        # with every reading would re-publish the retained status at every sample.
        for name, (thermostat, sensor) in self.thermostats.items():
            if thermostat.reason:
                out.append(f"{name}: no reading from {sensor}, fail-safe "
                           f"{'on' if thermostat.on else 'off'}")
        if self.patrol is not None and self.head is not None and self.patrol.state.failing:
            out.append(f"PTZ head {self.head.address} not answering on {self.head.port}")
        gps = self.cfg.gps
        if (self.gps is not None and gps is not None and self.gps.state in ("offline", "silent")
                and clock.monotonic() - self._started > gps.stale_after_s):
            out.append(f"GPS {self.gps.state}")  # not before its first sentences could come
        if self.sensors is not None and self.cfg.modbus is not None:
            polled = self.sensors.polls > 0  # read first: the stats are then of a whole poll
            stats = self.sensors.stats()
            for reg in self.cfg.modbus.registers:
                st = stats[reg.name]
                unit = f" {reg.unit}" if reg.unit else ""
                if not st.ok and polled:
                    kind = (st.error or "no reading").split(":", 1)[0]
                    out.append(f"sensor {reg.name} not read ({kind})")
                elif st.value is not None and reg.low is not None and st.value < reg.low:
                    out.append(f"{reg.name} below {reg.low:g}{unit}")
                elif st.value is not None and reg.high is not None and st.value > reg.high:
                    out.append(f"{reg.name} above {reg.high:g}{unit}")
        return out

    def dead(self) -> str:
        """A worker thread that died ("" if none): the watchdog must not be fed then."""
        if self.patrol is not None and not self.patrol.state.running:
            return "PTZ patrol thread died"
        if self.sensors is not None and not self.sensors.alive():
            return "Modbus poll thread died"
        if self.gps is not None and not self.gps.alive():
            return "GPS reader thread died"
        return ""

    def close(self) -> None:
        if self.patrol is not None:
            self.patrol.stop()
        if self.head is not None:
            self.head.close()
        if self.gps is not None:
            self.gps.close()
        if self.sensors is not None:
            self.sensors.close()
        for relay in self.relays.values():
            relay.close()  # off: a restarting node never leaves a siren on
        for device in self.inputs:
            device.close()


def thermostat_age_s(cfg: NodeConfig) -> float:
    """A Modbus reading older than two polls is not used for the fan or heater."""
    return 2 * cfg.modbus.poll_s + 1 if cfg.modbus is not None else math.inf

