"""The pole's cabinet as the node drives it: inputs that raise alerts and flap, relays switched
by alerts and by the fan rule, the PTZ head turned by a call over a real pty, Modbus sensors
out of range, the GPS receiver going quiet, and what a crew is told about each.

Pins are gpiozero MockFactory pins; the PTZ head, GPS receiver and Modbus slaves are the
simulators at the far end of ptys, so the drivers open and write real serial ports.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from gpiozero import DigitalOutputDevice, GPIOPinInUse

from contract.payloads import AlertKind
from contract.pole import PtzStats
from devkit.simulators.gps import GpsSimulator
from devkit.simulators.modbus import CLIMATE, UPS, SensorBusSimulator
from devkit.simulators.ptz import SimulatedHead
from drivers.ptz import PtzHead
from drivers.ptz.pelco_d import GO_TO_PRESET
from edge import clock
from edge.config import NodeConfig
from edge.pole.cabinet import Cabinet
from tests.support.waiting import wait_for

# A thread that dies of an exception fails the test: the cabinet counts faults, never raises.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")

TAMPER, DOOR, PIR, UPS_ON_BATTERY, UPS_LOW = 22, 23, 24, 5, 6
FLOODLIGHT, SIREN, FAN, HEATER = 12, 13, 16, 19
DEBOUNCE_S = 0.01
INPUT, RESTORED, FLAPPING = (AlertKind.INPUT, AlertKind.INPUT_RESTORED,
                             AlertKind.INPUT_FLAPPING)

# The shape of docs/config/demo-node.yaml: simulated pins; serial devices added per test.
POLE: dict[str, Any] = {
    "node": {"id": "test-0001", "site": "Test pole",
             "location": {"lat": 50.2547, "lon": 28.6587}},
    "hub": {"host": "127.0.0.1", "port": 1883},
    "gpio": {
        "pin_factory": "mock",
        "call_button": {"pin": 17},
        "call_led": {"pin": 27},
        "inputs": [
            {"name": "tamper", "pin": TAMPER, "role": "tamper"},
            {"name": "door", "pin": DOOR, "role": "door"},
            {"name": "pir", "pin": PIR, "role": "motion", "alert": False},
            {"name": "ups_on_battery", "pin": UPS_ON_BATTERY, "role": "on_battery"},
            {"name": "ups_battery_low", "pin": UPS_LOW, "role": "battery_low",
             "alert": False},
        ],
        "flap": {"max_changes": 2, "window_s": 30},
        "outputs": [
            {"name": "floodlight", "pin": FLOODLIGHT, "on_alert_s": {"call_button": 300}},
            {"name": "siren", "pin": SIREN, "active_high": False,
             "on_alert_s": {"tamper": 30}},
            {"name": "cabinet_fan", "pin": FAN},
            {"name": "cabinet_heater", "pin": HEATER},
        ],
    },
}

Alerts = list[tuple[AlertKind, str]]


def pole(**sections: Any) -> NodeConfig:
    data = copy.deepcopy(POLE)
    data.update(sections)
    return NodeConfig.model_validate(data)


def short_alert_times(for_s: float) -> NodeConfig:
    """The pole with its floodlight and siren on for `for_s` per alert."""
    gpio = copy.deepcopy(POLE["gpio"])
    for out in gpio["outputs"]:
        out["on_alert_s"] = {source: for_s for source in out.get("on_alert_s", {})}
    return pole(gpio=gpio)


class Pole:
    """Builds cabinets on the test's MockFactory, records their alerts, closes them all."""

    def __init__(self, factory: Any, stack: ExitStack) -> None:
        self.factory = factory
        self.alerts: Alerts = []
        self._stack = stack

    def cabinet(self, cfg: NodeConfig) -> Cabinet:
        cab = Cabinet(cfg, self.factory, lambda kind, source: self.alerts.append(
            (kind, source)), DEBOUNCE_S)
        self._stack.callback(cab.close)
        return cab

    def level(self, pin: int) -> bool:
        return bool(self.factory.pin(pin).state)

    def pin(self, pin: int) -> Any:
        return self.factory.pin(pin)


@pytest.fixture
def field(factory: Any) -> Iterator[Pole]:
    with ExitStack() as stack:
        yield Pole(factory, stack)


def toggle(cab: Cabinet, name: str, pin: Any, times: int) -> None:
    """Open and close a contact, each change seen by the input before the next edge."""
    device = next(i for i in cab.inputs if i.name == name)
    for _ in range(times):
        expected = device.changes + 1
        if device.is_active:
            pin.drive_high()
        else:
            pin.drive_low()

        def seen(n: int = expected) -> bool:
            return device.changes == n

        wait_for(seen, what=f"{name} change {expected}")


# --- inputs ----------------------------------------------------------------------------


def test_a_tripped_tamper_switch_raises_an_alert_named_after_it(field: Pole) -> None:
    cab = field.cabinet(pole())
    assert field.alerts == [] and not cab.input_stats()["tamper"].active
    field.pin(TAMPER).drive_low()  # the switch closes to ground
    wait_for(lambda: field.alerts == [(INPUT, "tamper")], what="the tamper alert")
    stats = cab.input_stats()["tamper"]
    assert stats.active and stats.changes == 1 and not stats.flapping
    assert cab.problems() == []  # a tamper alert is news for the hub, not a degraded pole


def test_motion_seen_by_an_input_that_does_not_alert_raises_nothing(field: Pole) -> None:
    cab = field.cabinet(pole())
    field.pin(PIR).drive_low()
    wait_for(lambda: cab.input_stats()["pir"].active, what="the PIR active")
    assert field.alerts == []


def test_a_flapping_door_contact_alerts_once_as_flapping_and_is_a_problem(
        field: Pole) -> None:
    cab = field.cabinet(pole())
    toggle(cab, "door", field.pin(DOOR), 6)  # open, shut, open (one too many), ...
    # Opened, shut (restored), opened once too often: flapping, said once; no more after.
    assert field.alerts == [(INPUT, "door"), (RESTORED, "door"), (FLAPPING, "door")]
    stats = cab.input_stats()["door"]
    assert stats.flapping and stats.changes == 6 and stats.suppressed == 4
    assert cab.problems() == ["input door flapping"]


def test_a_flapping_input_that_does_not_alert_is_still_reported(field: Pole) -> None:
    cab = field.cabinet(pole())
    toggle(cab, "pir", field.pin(PIR), 4)
    assert field.alerts == []
    assert cab.problems() == ["input pir flapping"]


def test_the_ups_on_battery_and_its_battery_low_make_the_pole_degraded(field: Pole) -> None:
    cab = field.cabinet(pole())
    field.pin(UPS_ON_BATTERY).drive_low()
    wait_for(lambda: cab.problems() == ["on battery (ups_on_battery)"], what="on battery")
    assert field.alerts == [(INPUT, "ups_on_battery")]
    field.pin(UPS_LOW).drive_low()
    wait_for(lambda: cab.problems() == ["on battery (ups_on_battery)",
                                        "battery low (ups_battery_low)"], what="battery low")
    field.pin(UPS_LOW).drive_high()
    field.pin(UPS_ON_BATTERY).drive_high()  # mains back
    wait_for(lambda: cab.problems() == [], what="mains back")
    wait_for(lambda: field.alerts == [(INPUT, "ups_on_battery"), (RESTORED, "ups_on_battery")],
             what="the restoral alert")


# --- relays ----------------------------------------------------------------------------


def test_a_call_switches_the_floodlight_on_for_its_time(field: Pole) -> None:
    cab = field.cabinet(pole())
    assert not field.level(FLOODLIGHT)
    cab.on_alert("call_button")
    assert field.level(FLOODLIGHT)  # on before on_alert returns
    stats = cab.output_stats()["floodlight"]
    assert stats.on and stats.activations == 1
    assert stats.off_in_s is not None and 0 < stats.off_in_s <= 300
    assert not cab.output_stats()["siren"].on  # the siren is for tamper


def test_a_tamper_alert_sounds_an_active_low_siren(field: Pole) -> None:
    cab = field.cabinet(pole())
    assert field.level(SIREN)  # off on a board that switches on a low pin
    cab.on_alert("tamper")
    assert not field.level(SIREN) and cab.output_stats()["siren"].on
    assert not field.level(FLOODLIGHT)


def test_the_floodlight_and_siren_go_off_by_themselves(field: Pole) -> None:
    cab = field.cabinet(short_alert_times(0.2))
    cab.on_alert("call_button")
    cab.on_alert("tamper")
    wait_for(lambda: not any(s.on for s in cab.output_stats().values()), what="timed offs")
    # Each pin's history: off, on, off again (the siren's board is active-low).
    assert [p.state for p in field.pin(FLOODLIGHT).states] == [False, True, False]
    assert [p.state for p in field.pin(SIREN).states] == [False, True, False, True]
    assert cab.output_stats()["floodlight"].off_in_s is None


def test_an_alert_from_a_source_without_relays_switches_nothing(field: Pole) -> None:
    cab = field.cabinet(pole())
    cab.on_alert("door")
    assert not any(s.on for s in cab.output_stats().values())


# --- climate ---------------------------------------------------------------------------


def test_the_fan_follows_the_soc_temperature_with_hysteresis(field: Pole) -> None:
    rule = {"output": "cabinet_fan", "mode": "cool", "on_at_c": 70, "off_at_c": 60}
    cab = field.cabinet(pole(climate=[rule]))
    steps = [(65.0, False), (70.0, True), (65.0, True), (60.5, True), (60.0, False),
             (69.9, False), (75.0, True)]
    for temp, on in steps:
        cab.regulate(temp)
        assert field.level(FAN) is on, f"fan at {temp} °C"
    stats = cab.output_stats()["cabinet_fan"]
    assert stats.on and stats.temperature_c == 75.0 and stats.reason == ""
    assert cab.output_stats()["floodlight"].temperature_c is None


def test_without_readings_the_fan_fails_on_and_the_heater_off_and_a_crew_is_told(
        field: Pole) -> None:
    fan = {"output": "cabinet_fan", "mode": "cool", "on_at_c": 70, "off_at_c": 60,
           "stale_after_s": 0.05}
    heater = {"output": "cabinet_heater", "mode": "heat", "on_at_c": -5, "off_at_c": 2,
              "stale_after_s": 0.05}
    cab = field.cabinet(pole(climate=[fan, heater]))
    cab.regulate(-10.0)  # a frosty night: the heater on, the fan off
    assert field.level(HEATER) and not field.level(FAN)

    def stale() -> list[str]:
        cab.regulate(None)
        return cab.problems()

    problems = wait_for(lambda: len(stale()) == 2 and stale(), what="both rules stale")
    assert problems == ["cabinet_fan: no reading from soc, fail-safe on",
                        "cabinet_heater: no reading from soc, fail-safe off"]
    assert stale() == problems  # the same words while it lasts: no status re-published
    assert field.level(FAN) and not field.level(HEATER)
    assert "fail-safe on" in cab.output_stats()["cabinet_fan"].reason
    cab.regulate(20.0)  # the sensor is back
    assert cab.problems() == []
    assert not field.level(FAN) and not field.level(HEATER)


# --- PTZ head --------------------------------------------------------------------------


class ManualClock:
    """The simulated head's motion clock, moved by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def head(tmp_path: Path) -> Iterator[SimulatedHead]:
    """A head whose installer stored presets 1 and 2 at rest and 10 panned 63° right."""
    moved = ManualClock()
    with SimulatedHead(1, link=str(tmp_path / "ttyPTZ"), clock=moved) as sim:
        with PtzHead(sim.path, 1) as keyboard:
            keyboard.set_preset(1)
            keyboard.set_preset(2)
            keyboard.pan_right(63)
            wait_for(lambda: sim.state().moving, what="the head panning")
            moved.t += 1.0
            keyboard.stop()
            keyboard.set_preset(10)
            wait_for(lambda: 10 in sim.state().presets, what="preset 10 stored")
        assert sim.state().presets[10].pan_deg == 63.0
        yield sim


def ptz(sim: SimulatedHead, **changes: Any) -> dict[str, Any]:
    section = {"port": sim.path, "tour": [{"preset": 1, "dwell_s": 0.05},
                                          {"preset": 2, "dwell_s": 0.05}],
               "alert_presets": {"call_button": 10}, "resume_after_s": 60}
    section.update(changes)
    return section


def gotos(sim: SimulatedHead) -> list[int]:
    return [f.data2 for f in sim.received() if f.cmd2 == GO_TO_PRESET]


def ptz_stats(cab: Cabinet) -> PtzStats:
    stats = cab.ptz_stats()
    assert stats is not None, "a cabinet with a PTZ section reports its head"
    return stats


def test_a_call_turns_the_patrolling_head_to_the_citizen(
        field: Pole, head: SimulatedHead) -> None:
    cab = field.cabinet(pole(ptz=ptz(head)))
    wait_for(lambda: gotos(head)[:2] == [1, 2], what="the tour walking")
    stats = ptz_stats(cab)
    assert stats.mode == "patrol" and stats.errors == 0
    cab.on_alert("call_button")
    wait_for(lambda: head.state().last_preset == 10, what="the head at the call's preset")
    assert head.state().pan_deg == 63.0
    wait_for(lambda: ptz_stats(cab).preset == 10, what="the patrol knowing the head is there")
    stats = ptz_stats(cab)
    assert (stats.mode, stats.preset, stats.alert_preset) == ("alert", 10, 10)
    assert stats.resume_in_s is not None and 0 < stats.resume_in_s <= 60
    assert stats.frames_sent >= 3
    cab.on_alert("door")  # no preset for the door: the head stays on the citizen
    assert ptz_stats(cab).alert_preset == 10
    assert cab.problems() == []


def test_a_head_without_a_tour_is_idle_until_an_alert(
        field: Pole, head: SimulatedHead) -> None:
    cab = field.cabinet(pole(ptz=ptz(head, tour=[])))
    stats = ptz_stats(cab)
    assert stats.mode == "idle" and stats.preset is None
    cab.on_alert("call_button")
    wait_for(lambda: head.state().last_preset == 10, what="the head at the call's preset")
    assert ptz_stats(cab).mode == "alert"


def test_a_pulled_ptz_adapter_is_a_problem_until_a_command_gets_through(
        field: Pole, head: SimulatedHead) -> None:
    cab = field.cabinet(pole(ptz=ptz(head)))
    wait_for(lambda: len(gotos(head)) >= 2, what="the tour walking")
    head.unplug()
    problems = wait_for(
        lambda: [p for p in cab.problems() if p.startswith("PTZ head")],
        what="the PTZ head named in the problems")
    assert len(problems) == 1 and "ttyPTZ" in problems[0]
    assert cab.dead() == ""  # the patrol lives on and retries
    head.plug()
    wait_for(lambda: cab.problems() == [], what="the problem cleared after the replug")
    done = len(gotos(head))
    wait_for(lambda: len(gotos(head)) > done, what="the tour going on")
    stats = ptz_stats(cab)
    assert stats.errors >= 1 and stats.last_error is not None


# --- Modbus sensors --------------------------------------------------------------------


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[SensorBusSimulator]:
    with SensorBusSimulator(link=str(tmp_path / "ttyRS485")) as sim:
        yield sim


def modbus(sim: SensorBusSimulator, registers: list[dict[str, Any]]) -> dict[str, Any]:
    return {"port": sim.path, "poll_s": 1, "timeout_s": 0.2, "retries": 0,
            "registers": registers}


CABINET_TEMPERATURE = {"name": "cabinet_temperature", "slave": CLIMATE, "kind": "input",
                       "address": 1, "type": "int16", "scale": 0.1, "unit": "°C", "high": 45}


def test_sensor_readings_outside_their_limits_and_a_silent_slave_are_problems(
        field: Pole, bus: SensorBusSimulator) -> None:
    bus.set_climate(51.5, 40.0)  # the cabinet in the afternoon sun
    bus.set_ups(battery_pct=20, on_battery=True, input_v=0.0, runtime_s=600, load_w=80.0)
    registers = [
        CABINET_TEMPERATURE,
        {"name": "ups_battery", "slave": UPS, "kind": "holding", "address": 0, "unit": "%",
         "low": 30},
        {"name": "meter_voltage", "slave": 9, "kind": "input", "address": 0, "unit": "V"},
    ]
    cab = field.cabinet(pole(modbus=modbus(bus, registers)))
    wait_for(lambda: cab.sensors is not None and cab.sensors.polls >= 1, what="a first poll")
    problems = cab.problems()
    assert problems == ["cabinet_temperature above 45 °C", "ups_battery below 30 %",
                        "sensor meter_voltage not read (no_response)"]
    stats = cab.sensor_stats()
    assert stats["cabinet_temperature"].value == 51.5 and stats["cabinet_temperature"].ok
    assert not stats["meter_voltage"].ok and set(stats["meter_voltage"].errors) == {"no_response"}
    bus.set_climate(30.0, 40.0)  # the sun has gone
    wait_for(lambda: not any(p.startswith("cabinet_temperature") for p in cab.problems()),
             what="the temperature back in range")


def test_the_fan_can_follow_the_cabinet_sensor_instead_of_the_soc(
        field: Pole, bus: SensorBusSimulator) -> None:
    bus.set_climate(41.0, 40.0)
    rule = {"output": "cabinet_fan", "mode": "cool", "on_at_c": 40, "off_at_c": 34,
            "sensor": "cabinet_temperature"}
    cab = field.cabinet(pole(modbus=modbus(bus, [CABINET_TEMPERATURE]), climate=[rule]))
    wait_for(lambda: cab.sensor_stats()["cabinet_temperature"].ok, what="the first poll")
    cab.regulate(20.0)  # a cool SoC does not matter to this fan
    assert field.level(FAN)
    assert cab.output_stats()["cabinet_fan"].temperature_c == 41.0


# --- GPS receiver ----------------------------------------------------------------------


def test_the_gps_reports_its_fix_vouches_for_the_clock_and_going_silent_is_a_problem(
        field: Pole, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with GpsSimulator(rate_hz=20, link=str(tmp_path / "ttyGPS")) as gps:
        cab = field.cabinet(pole(gps={"port": gps.path, "stale_after_s": 0.3}))
        wait_for(lambda: cab.gps_offset_s() is not None, what="a fix with the time")
        stats = cab.gps_stats()
        assert stats is not None and stats.state == "fix" and stats.lat is not None
        monkeypatch.setattr(clock, "clock_synced", lambda: False)  # no NTP up the pole
        clock.use_gps(cab.gps_offset_s)
        try:
            state = clock.sync_state()
        finally:
            clock.use_gps(None)
        assert (state.synced, state.source) == (True, "gps")
        assert state.offset_s is not None and abs(state.offset_s) < 1.0
        assert cab.problems() == []
        gps.set_talking(False)  # the receiver hangs
        wait_for(lambda: cab.problems() == ["GPS silent"], what="the silent receiver reported")
        assert cab.gps_offset_s() is None  # a silent receiver vouches for nothing


# --- threads and shutdown --------------------------------------------------------------


def test_a_cabinet_with_every_device_runs_its_threads_and_closes_with_relays_off(
        field: Pole, head: SimulatedHead, bus: SensorBusSimulator, tmp_path: Path) -> None:
    with GpsSimulator(rate_hz=20, link=str(tmp_path / "ttyGPS")) as gps:
        rule = {"output": "cabinet_fan", "mode": "cool", "on_at_c": 40, "off_at_c": 34}
        cab = field.cabinet(pole(ptz=ptz(head), gps={"port": gps.path},
                                 modbus=modbus(bus, [CABINET_TEMPERATURE]), climate=[rule]))
        wait_for(lambda: cab.gps_offset_s() is not None, what="the GPS fix")
        wait_for(lambda: cab.sensor_stats()["cabinet_temperature"].ok, what="a sensor poll")
        assert cab.dead() == ""
        cab.on_alert("call_button")
        cab.regulate(45.0)
        assert field.level(FLOODLIGHT) and field.level(FAN)
        cab.close()
        assert not field.level(FLOODLIGHT) and not field.level(FAN)
        assert field.level(SIREN)  # active-low: a high pin is off
        assert cab.dead() == "PTZ patrol thread died"  # closed: the watchdog would see it
        cab.close()  # a second close is harmless


def test_a_stopped_patrol_is_named_as_a_dead_thread(field: Pole, head: SimulatedHead) -> None:
    cab = field.cabinet(pole(ptz=ptz(head)))
    assert cab.dead() == ""
    assert cab.patrol is not None
    cab.patrol.stop()
    assert cab.dead() == "PTZ patrol thread died"


def test_a_cabinet_that_fails_half_built_releases_the_pins_it_had_claimed(
        field: Pole) -> None:
    squatter = DigitalOutputDevice(FAN, pin_factory=field.factory)  # the fan's pin is taken
    before = set(threading.enumerate())
    with pytest.raises(GPIOPinInUse):
        Cabinet(pole(), field.factory, lambda *_: None, DEBOUNCE_S)
    left = [t.name for t in threading.enumerate() if t not in before]
    assert left == []  # the inputs' and relays' threads were stopped
    squatter.close()
    cab = field.cabinet(pole())  # every pin, inputs and relays alike, is free again
    cab.on_alert("call_button")
    assert field.level(FLOODLIGHT)
