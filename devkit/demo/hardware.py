"""The demo's pole hardware steps: the PTZ head's patrol, turned by a call and back on its
tour afterwards; the floodlight on a call; the cabinet fan following the Modbus temperature;
a mains failure that raises an alert and makes the node's status degraded until the power
returns.

Each step acts through the simulators (the head's line, the sensor bus, the pins) and checks
twice: on the simulated device, as a technician at the pole would see it, and in what the
hub received (telemetry, the retained status, alerts). HardwareStep keeps each check's
outcome for the summary (checks()); a step whose device the config lacks is left out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from contract.payloads import AlertKind
from contract.pole import OutputStats, PtzStats, SensorStats
from devkit.demo.devices import SerialDevices
from devkit.demo.pole import Pole, active_level
from drivers.ptz.pelco_d import GO_TO_PRESET
from hub.client import HubConsole
from hub.state import AlertRecord, NodeView, PoleHardware

T = TypeVar("T")

Say = Callable[[str, str], None]  # narration: text, rich style

PATROL = "PTZ patrol before the calls"
READINGS = "sensors and GPS at the hub"
CALL_PRESET = "PTZ head turned on the first call"
FLOODLIGHT = "floodlight on the first call"
RESUMED = "PTZ tour resumed after the alerts"
FAN = "cabinet fan followed the temperature"
MAINS = "mains failure: alerts, degraded status"

STEP_TIMEOUT_S = 10.0  # an alert, a preset, a heartbeat's worth of telemetry
HOT_ABOVE_C, COOL_BELOW_C = 3.0, 4.0  # the heat step's readings, past the fan's thresholds


@dataclass(frozen=True)
class Check:
    """One thing the pole's hardware had to do, and whether it did: a summary row."""

    name: str
    ok: bool
    text: str

    @property
    def value(self) -> str:
        return ("yes: " if self.ok else "NO: ") + self.text


class Stage(Protocol):
    """What the steps use of the script: its waits (which keep the narration and the clip
    going) and the hub's alerts."""

    def wait_for(self, cond: Callable[[], T], timeout_s: float) -> T | None: ...

    def pause(self, seconds: float) -> None: ...

    def known(self) -> set[str]: ...

    def new_acked(self, kind: AlertKind, before: set[str]) -> AlertRecord | None: ...

    def arrived(self, rec: AlertRecord) -> None: ...


class HardwareStep:
    """The pole's hardware, shown and checked step by step."""

    def __init__(self, pole: Pole, devices: SerialDevices, hub: HubConsole, stage: Stage,
                 say: Say) -> None:
        self.pole, self.devices, self.hub, self.stage, self.say = pole, devices, hub, stage, say
        cfg = pole.cfg
        self.node = cfg.node.id
        # telemetry reaches the hub within a heartbeat; two, for one sent just before a change
        self.beat_s = 2 * cfg.timings.heartbeat_s + 1
        # a reading reaches the fan's rule and the health verdict at the node's next sample
        self.sample_s = cfg.health.sample_s + (2 * cfg.modbus.poll_s if cfg.modbus else 0)
        ptz = cfg.ptz
        self.tour = [s.preset for s in ptz.tour] if ptz is not None else []
        self.dwell_s = max((s.dwell_s for s in ptz.tour), default=0.0) if ptz else 0.0
        self.alert_presets = dict(ptz.alert_presets) if ptz is not None else {}
        self.resume_after_s = ptz.resume_after_s if ptz is not None else 0.0
        self.floodlight = next((o.name for o in cfg.gpio.outputs
                                if "call_button" in o.on_alert_s), None)
        registers = {r.name for r in cfg.modbus.registers} if cfg.modbus else set()
        self.fan = next((r for r in cfg.climate
                         if r.mode == "cool" and r.sensor in registers), None)
        self.on_battery = next((i.name for i in cfg.gpio.inputs
                                if i.role == "on_battery" and i.alert), None)
        head = devices.head is not None
        expected = {
            PATROL: head and bool(self.tour),
            READINGS: devices.bus is not None or devices.gps is not None,
            CALL_PRESET: head and "call_button" in self.alert_presets,
            FLOODLIGHT: self.floodlight is not None,
            RESUMED: head and bool(self.tour) and bool(self.alert_presets),
            FAN: self.fan is not None and devices.bus is not None,
            MAINS: self.on_battery is not None,
        }
        self.expected = [name for name, wanted in expected.items() if wanted]
        self.results: dict[str, Check] = {}
        self._first_call_seen = False

    # --- what the summary uses ---

    def checks(self) -> list[Check]:
        """Every check the config allows, in story order; one never made counts as failed."""
        return [self.results.get(name, Check(name, False, "not checked"))
                for name in self.expected]

    # --- steps ---

    def patrol(self) -> None:
        """Before the calls: the head walks its tour, the hub sees it, and the readings."""
        head = self.devices.head
        if PATROL in self.expected and head is not None:
            tour = "→".join(map(str, self.tour))
            self.say(f"the PTZ head patrols presets {tour}, {self.dwell_s:g} s at each", "bold")
            walked = self.stage.wait_for(lambda: _has_run(self.sent_presets(), self.tour),
                                         len(self.tour) * self.dwell_s + 2)
            # the hub's telemetry lags the head by up to a heartbeat: wait until they agree
            hub = self.stage.wait_for(
                lambda: self._ptz("patrol", head.state().last_preset), self.beat_s)
            at = head.state().last_preset
            if walked and (hub or self._ptz("patrol")):
                self._check(PATROL, True, f"head went {tour}; hub saw patrol",
                            f"the simulated head went {tour} and is at preset {at}; the hub's "
                            f"telemetry says: {self._ptz_text()}")
            else:
                went = "→".join(map(str, self.sent_presets())) or "nowhere"
                self._check(PATROL, False, f"head went {went}; hub saw {self._ptz_text()}",
                            f"the PTZ head did not patrol as configured: it went {went}, the "
                            f"hub saw {self._ptz_text()}")
        if READINGS in self.expected:
            self.readings()

    def readings(self) -> None:
        """The cabinet's sensors and the GPS fix, as the hub's telemetry shows them."""
        want_gps, want_sensors = self.devices.gps is not None, self.devices.bus is not None

        def arrived() -> PoleHardware | None:
            hw = self._hardware()
            if hw is None or (want_gps and (hw.gps is None or hw.gps.state != "fix")):
                return None
            if want_sensors and not (hw.sensors and all(s.ok for s in hw.sensors.values())):
                return None
            return hw

        hw = self.stage.wait_for(arrived, STEP_TIMEOUT_S)
        if hw is None:
            got = self._hardware()
            seen = (f"sensors {_readings(got.sensors) if got else '-'}, GPS "
                    f"{got.gps.state if got and got.gps else '-'}")
            self._check(READINGS, False, f"the hub saw {seen}",
                        f"the hub did not get every reading and a GPS fix: {seen}")
            return
        if want_sensors:
            self.say(f"the hub reads the cabinet's Modbus sensors: {_readings(hw.sensors)}",
                     "green")
        gps = hw.gps
        if gps is not None and gps.lat is not None and gps.lon is not None:
            offset = ("" if gps.clock_offset_s is None
                      else f"; GPS time minus the node's clock {gps.clock_offset_s:+.3f} s")
            self.say(f"GPS fix at {gps.lat:.4f}, {gps.lon:.4f} with {gps.satellites} "
                     f"satellites{offset}", "green")
        self.results[READINGS] = Check(READINGS, True, ", ".join(
            ([f"{len(hw.sensors)} readings"] if want_sensors else [])
            + ([f"GPS fix, {gps.satellites} satellites"] if gps is not None else [])))

    def first_call(self) -> None:
        """After the first acknowledged call: the head faces the button, the light is on."""
        if self._first_call_seen:
            return
        self._first_call_seen = True
        head, preset = self.devices.head, self.alert_presets.get("call_button")
        if CALL_PRESET in self.expected and head is not None and preset is not None:
            there = self.stage.wait_for(lambda: head.state().last_preset == preset, 2.0)
            hub = self.stage.wait_for(lambda: self._ptz("alert", preset), self.beat_s)
            if there and hub:
                resume = ("" if hub.resume_in_s is None
                          else f", tour resumes in {hub.resume_in_s:.0f} s")
                self._check(CALL_PRESET, True, f"to preset {preset}; hub saw alert mode",
                            f"the PTZ head turned to the call button's preset {preset} (the "
                            f"simulated head is there); the hub's telemetry says: PTZ alert, "
                            f"preset {preset}{resume}")
            else:
                self._check(CALL_PRESET, False, f"head at preset {head.state().last_preset}, "
                            f"hub saw {self._ptz_text()}",
                            f"the PTZ head did not turn to preset {preset}: it is at preset "
                            f"{head.state().last_preset}, the hub saw {self._ptz_text()}")
        if FLOODLIGHT in self.expected and self.floodlight is not None:
            relay = self.pole.relays[self.floodlight]
            for_s = relay.on_alert_s["call_button"]
            if self.pole.relay_on(relay.name):
                self._check(FLOODLIGHT, True, f"relay on (GPIO {relay.pin}) for {for_s:g} s",
                            f"{relay.name} relay on (GPIO {relay.pin}) for {for_s:g} s: the "
                            "bus stop is lit for the camera")
            else:
                self._check(FLOODLIGHT, False, f"relay off (GPIO {relay.pin})",
                            f"the {relay.name} relay is off (GPIO {relay.pin})")

    def turned(self, source: str) -> None:
        """Narrate the head facing an alert's preset (no check: the call's is the one)."""
        head, preset = self.devices.head, self.alert_presets.get(source)
        if head is None or preset is None:
            return
        if self.stage.wait_for(lambda: head.state().last_preset == preset, 2.0):
            self.say(f"the PTZ head turned to the {source} preset {preset}", "green")

    def heat(self) -> None:
        """The cabinet heats up past the fan's threshold and cools down again."""
        bus, rule = self.devices.bus, self.fan
        if FAN not in self.expected or bus is None or rule is None:
            return
        fan, pin = rule.output, self.pole.relays[rule.output].pin
        hot, cool = rule.on_at_c + HOT_ABOVE_C, rule.off_at_c - COOL_BELOW_C
        timeout = self.sample_s + self.beat_s
        self.say(f"afternoon sun on the cabinet: its Modbus sensor reads {hot:g} °C (the fan "
                 f"goes on at {rule.on_at_c:g} °C, off at {rule.off_at_c:g} °C)", "bold")
        bus.set_climate(hot, 55.0)
        on = self.stage.wait_for(lambda: self._fan(fan, True), timeout)
        self.say(f"{fan} relay on (GPIO {pin}); the hub's telemetry says: {fan} on{_at(on)}"
                 if on else f"{fan} did not go on within {timeout:.0f} s",
                 "green" if on else "bold red")
        self.say(f"evening: the cabinet cools to {cool:g} °C", "bold")
        bus.set_climate(cool, 45.0)
        off = self.stage.wait_for(lambda: self._fan(fan, False), timeout)
        self.say(f"{fan} relay off again; the hub's telemetry says: {fan} off{_at(off)}"
                 if off else f"{fan} did not go off within {timeout:.0f} s",
                 "green" if off else "bold red")
        self.results[FAN] = Check(FAN, bool(on and off), f"{'on' if on else 'NOT on'} at "
                                  f"{hot:g} °C, {'off' if off else 'NOT off'} at {cool:g} °C")

    def resumed(self) -> None:
        """Some time after the last alert, the head is back on its tour."""
        head = self.devices.head
        if RESUMED not in self.expected or head is None:
            return
        wait = self.resume_after_s + self.dwell_s + self.beat_s
        self.say(f"the PTZ head holds an alert's preset for {self.resume_after_s:g} s after "
                 "the last alert, then goes back to its tour", "bold")

        def back() -> int | None:
            at = head.state().last_preset
            resumed = _after_alerts(self.sent_presets(), set(self.alert_presets.values()))
            return at if at in self.tour and resumed and self._ptz("patrol") else None

        at = self.stage.wait_for(back, wait)
        if at is not None:
            self._check(RESUMED, True, f"head back at preset {at}; hub saw patrol",
                        f"the tour resumed: the head is back at preset {at}; the hub's "
                        "telemetry says: PTZ patrol")
        else:
            self._check(RESUMED, False, f"head at preset {head.state().last_preset}, hub saw "
                        f"{self._ptz_text()}", f"the tour did not resume within {wait:.0f} s")

    def mains_failure(self, hold_s: float) -> bool:
        """The mains fail: the UPS's on-battery contact closes, an alert goes to the hub and
        the node says it is degraded until the power is back. True if the power was cut."""
        name, bus = self.on_battery, self.devices.bus
        if MAINS not in self.expected or name is None:
            return False
        level = "high" if active_level(self.pole.inputs[name]) else "low"
        reasons_before = set(self._reasons())
        self.say(f"mains power fails: the UPS runs the pole on its battery and closes its "
                 f"{name} contact (GPIO {self.pole.inputs[name].pin} {level})", "bold")
        alert = self._contact(name, True, AlertKind.INPUT)
        if bus is not None:  # the UPS's own registers agree: no input, draining
            bus.set_ups(battery_pct=86, on_battery=True, input_v=0.0, runtime_s=5100,
                        load_w=312.5)
        degraded = self.stage.wait_for(self._on_battery_reason, self.sample_s + self.beat_s)
        self.say(f"the node's retained status at the hub: {self._verdict()}",
                 "green" if degraded else "bold red")
        self.stage.pause(hold_s)
        self.say(f"mains back: the UPS charges again and opens its {name} contact", "bold")
        restored = self._contact(name, False, AlertKind.INPUT_RESTORED)
        if bus is not None:  # back to the simulator's stock readings
            bus.set_ups(battery_pct=87, on_battery=False, input_v=229.8, runtime_s=5400,
                        load_w=312.5)
        cleared = self.stage.wait_for(lambda: set(self._reasons()) <= reasons_before,
                                      self.sample_s + self.beat_s)
        self.say(f"the node's status at the hub: {self._verdict()}",
                 "green" if cleared else "bold red")
        told = [f"alert seq {alert.seq} acked" if alert else "NO alert",
                "status degraded: on battery" if degraded else "status never said on battery",
                f"restoral seq {restored.seq} acked" if restored else "NO restoral",
                "status cleared" if cleared else "reason never cleared"]
        self.results[MAINS] = Check(MAINS, bool(alert and degraded and restored and cleared),
                                    ", ".join(told))
        return True

    def _contact(self, name: str, active: bool, kind: AlertKind) -> AlertRecord | None:
        """Drive a cabinet contact and wait for its alert to be acknowledged at the hub."""
        before = self.stage.known()
        self.pole.set_input(name, active)
        rec = self.stage.wait_for(lambda: self.stage.new_acked(kind, before), STEP_TIMEOUT_S)
        if rec is not None:
            self.stage.arrived(rec)
        else:
            self.say(f"no acknowledged {kind} alert from {name} at the hub", "bold red")
        return rec

    # --- the simulated head ---

    def sent_presets(self) -> list[int]:
        """The presets the node sent the head to, in order, as the head's line carried them."""
        head = self.devices.head
        if head is None:
            return []
        return [f.data2 for f in head.received() if f.is_extended and f.cmd2 == GO_TO_PRESET]

    # --- what the hub received ---

    def _node(self) -> NodeView | None:
        return next((n for n in self.hub.state.nodes() if n.node_id == self.node), None)

    def _hardware(self) -> PoleHardware | None:
        node = self._node()
        return node.hardware if node is not None else None

    def _ptz(self, mode: str, preset: int | None = None) -> PtzStats | None:
        """The hub's PTZ telemetry if it says `mode` (at `preset`)."""
        hw = self._hardware()
        ptz = hw.ptz if hw is not None else None
        if ptz is None or ptz.mode != mode or (preset is not None and ptz.preset != preset):
            return None
        return ptz

    def _ptz_text(self) -> str:
        hw = self._hardware()
        if hw is None or hw.ptz is None:
            return "no PTZ telemetry"
        return f"PTZ {hw.ptz.mode}, preset {hw.ptz.preset}"

    def _fan(self, name: str, on: bool) -> OutputStats | None:
        """The hub's telemetry of the fan once both it and the relay's pin say `on`."""
        hw = self._hardware()
        out = hw.outputs.get(name) if hw is not None else None
        if out is None or out.on != on or self.pole.relay_on(name) != on:
            return None
        return out

    def _reasons(self) -> tuple[str, ...]:
        node = self._node()
        return node.reasons if node is not None else ()

    def _verdict(self) -> str:
        node = self._node()
        if node is None:
            return "no status"
        return node.health + (f": {'; '.join(node.reasons)}" if node.reasons else "")

    def _on_battery_reason(self) -> str | None:
        node = self._node()
        if node is None or node.health == "ok":
            return None
        return next((r for r in node.reasons if r.startswith("on battery")), None)

    def _check(self, name: str, ok: bool, text: str, line: str) -> None:
        """Keep a check's outcome for the summary and tell it: green if it held."""
        self.results[name] = Check(name, ok, text)
        self.say(line, "green" if ok else "bold red")


def _has_run(seq: list[int], run: list[int]) -> bool:
    """`run` appears in `seq` as consecutive items."""
    n = len(run)
    return bool(run) and any(seq[i:i + n] == run for i in range(len(seq) - n + 1))


def _after_alerts(sent: list[int], alert_presets: set[int]) -> bool:
    """An alert's preset was sent, and a tour stop after the last one."""
    last = max((i for i, p in enumerate(sent) if p in alert_presets), default=None)
    return last is not None and last + 1 < len(sent)


def _readings(sensors: dict[str, SensorStats]) -> str:
    return ", ".join(f"{name} {s.value:g} {s.unit}".rstrip() if s.value is not None
                     else f"{name} -" for name, s in sensors.items())


def _at(out: OutputStats | None) -> str:
    return "" if out is None or out.temperature_c is None else f" at {out.temperature_c:g} °C"
