"""The pole's hardware beyond the call button, with a real node process and real Mosquitto:
the PTZ head's patrol and the call preset, serial adapters pulled and plugged back, noise on
the serial lines, cabinet contacts (door, UPS, a flapping tamper switch), relays and the
cabinet fan, and the GPS clock state on alerts.

The serial devices are simulators at the far end of real ptys, reached through stable links
in the test's directory as udev's /dev/serial/by-id/ links would be; the pins are gpiozero's
MockFactory, worked through the pin simulator.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devkit.localbroker import LocalBroker
from devkit.simulators.gps import GpsSimulator
from devkit.simulators.modbus import SensorBusSimulator
from devkit.simulators.ptz import SimulatedHead
from drivers.ptz.pelco_d import PtzHead
from edge import clock
from hub.client import HubConsole
from hub.state import AlertRecord
from tests.support.hub_clients import Listener
from tests.support.node import NODE_ID, TAMPER, NodeProcess, node_config
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

TOUR, CALL_PRESET = (1, 2), 10
DOOR, UPS_ON_BATTERY, FLOODLIGHT, CABINET_FAN = 23, 5, 12, 16
CABINET_SENSORS = [
    {"name": "cabinet_temperature", "slave": 1, "kind": "input", "address": 1,
     "type": "int16", "scale": 0.1, "unit": "°C"},
    {"name": "cabinet_humidity", "slave": 1, "kind": "input", "address": 2, "scale": 0.1,
     "unit": "%RH"},
    {"name": "ups_battery", "slave": 2, "kind": "holding", "address": 0, "unit": "%"},
]
SLOW = 45.0  # generous: two shared cores run the broker, the node and the simulators


# --- the pole's serial devices, each behind a stable link that survives a replug ---


@pytest.fixture
def head(tmp_path: Path) -> Iterator[SimulatedHead]:
    """A Pelco-D head at address 1 whose presets the installer stored before the node ran."""
    head = SimulatedHead(1, link=str(tmp_path / "ptz"))
    with PtzHead(head.path, 1) as installer:
        for preset in (*TOUR, CALL_PRESET):
            installer.set_preset(preset)
    wait_for(lambda: set(head.state().presets) == {*TOUR, CALL_PRESET},
             what="the presets stored in the head")
    yield head
    head.close()


@pytest.fixture
def gps(tmp_path: Path) -> Iterator[GpsSimulator]:
    """A receiver with a fix whose time is this machine's clock."""
    receiver = GpsSimulator(link=str(tmp_path / "gps"))
    yield receiver
    receiver.close()


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[SensorBusSimulator]:
    """The RS-485 bus: a climate sensor (slave 1) and a smart UPS (slave 2)."""
    simulator = SensorBusSimulator(link=str(tmp_path / "modbus"))
    yield simulator
    simulator.close()


@pytest.fixture
def hub(broker: LocalBroker) -> Iterator[HubConsole]:
    """Dispatch, acknowledging every alert as it comes."""
    console = HubConsole(broker.host, broker.port, auto_ack=True, operator="test-dispatch",
                         client_id="test-hub", tls=broker.hub_tls)
    console.start()
    assert console.wait_ready(10)
    yield console
    console.stop()


@pytest.fixture
def alerts_on_the_wire(broker: LocalBroker) -> Iterator[Listener]:
    """Every alert payload as the node sent it (copies included)."""
    listener = Listener(broker, f"poles/{NODE_ID}/alert")
    yield listener
    listener.close()


# --- config ---


def ptz_section(head: SimulatedHead) -> dict[str, Any]:
    return {"port": head.path, "address": 1, "tour": [{"preset": p, "dwell_s": 1} for p in TOUR],
            "alert_presets": {"call_button": CALL_PRESET}, "resume_after_s": 3}


def gps_section(gps: GpsSimulator) -> dict[str, Any]:
    return {"port": gps.path}  # silent after 5 s without a valid sentence


def modbus_section(bus: SensorBusSimulator) -> dict[str, Any]:
    # No retries, so each spoiled reply is one failed read the test can count.
    return {"port": bus.path, "poll_s": 1, "timeout_s": 0.5, "retries": 0,
            "registers": CABINET_SENSORS}


def pole_config(tmp_path: Path, broker: LocalBroker, *, gpio: dict[str, Any] | None = None,
                **sections: Any) -> Path:
    """The test node's config with `gpio` keys merged in and the pole's sections added; the
    health verdict is sampled every second so status changes come quickly."""
    path = node_config(tmp_path, broker)
    cfg = yaml.safe_load(path.read_text())
    cfg["gpio"].update(gpio or {})
    cfg["health"] = {"sample_s": 1}
    cfg.update(sections)
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    return path


# --- what the hub sees ---


def last_beat(telemetry: Listener) -> dict[str, Any]:
    """The latest heartbeat ({} before the first)."""
    messages = telemetry.messages
    return json.loads(messages[-1][1]) if messages else {}


def beat_where(telemetry: Listener, cond: Callable[[dict[str, Any]], Any], what: str,
               timeout: float = SLOW) -> dict[str, Any]:
    """Wait for a heartbeat for which `cond` holds and return it."""
    def check() -> dict[str, Any] | None:
        beat = last_beat(telemetry)
        return beat if beat and cond(beat) else None

    return wait_for(check, timeout=timeout, what=what)  # type: ignore[no-any-return]


def retained_status(broker: LocalBroker) -> dict[str, Any]:
    """The node's status as a hub connecting now reads it: the retained copy."""
    listener = Listener(broker, f"poles/{NODE_ID}/status")
    try:
        wait_for(lambda: listener.messages, what="the retained status")
        return listener.payloads()[-1]
    finally:
        listener.close()


def status_where(broker: LocalBroker, cond: Callable[[dict[str, Any]], Any], what: str,
                 timeout: float = SLOW) -> dict[str, Any]:
    """Wait for a retained `online` status for which `cond` holds (not the last will, which
    the broker publishes if the link drops) and return it."""
    def check() -> dict[str, Any] | None:
        status = retained_status(broker)
        if status["state"] == "online" and cond(status):
            return status
        time.sleep(0.2)  # each look is a new TLS connection: do not hammer the broker
        return None

    return wait_for(check, timeout=timeout, what=what)  # type: ignore[no-any-return]


def reasons(status: dict[str, Any]) -> str:
    return "; ".join(status.get("reasons", []))


def alerts(hub: HubConsole, kind: str | None = None,
           source: str | None = None) -> list[AlertRecord]:
    return sorted((a for a in hub.state.alerts()
                   if (kind is None or a.kind == kind) and (source is None or a.source == source)),
                  key=lambda a: a.seq)


def goto_frame(preset: int) -> bytes:
    """Pelco-D "go to preset" for address 1, written out by hand: sync, address, command 1,
    command 2 (0x07), data 1, data 2 (the preset), sum of bytes 2-6 modulo 256."""
    return bytes([0xFF, 0x01, 0x00, 0x07, 0x00, preset, (0x01 + 0x07 + preset) % 256])


def gotos(head: SimulatedHead, after: int = 0) -> list[int]:
    """The presets the head was sent to, in order, from frame number `after` on."""
    return [f.data2 for f in head.received()[after:] if f.cmd2 == 0x07]


def alive(node: NodeProcess) -> bool:
    return node.proc is not None and node.proc.poll() is None


# --- the tests ---


def test_a_call_turns_the_patrolling_head_to_the_buttons_preset_and_the_tour_resumes(
    tmp_path: Path, broker: LocalBroker, head: SimulatedHead, hub: HubConsole,
    start_node: Callable[..., NodeProcess], telemetry: Listener,
) -> None:
    stored = len(head.received())
    node = start_node(pole_config(tmp_path, broker, ptz=ptz_section(head)))
    wait_for(lambda: {1, 2} <= set(gotos(head, stored)), timeout=SLOW,
             what="the head walking its tour, presets 1 and 2")
    beat_where(telemetry, lambda b: b["ptz"]["mode"] == "patrol", "telemetry: ptz patrolling")

    node.press()
    wait_for(lambda: head.state().last_preset == CALL_PRESET, timeout=SLOW,
             what="the head at the call button's preset")
    turned_at = len(head.received())
    [call] = wait_for(lambda: alerts(hub, "call"), timeout=SLOW, what="the call at the hub")
    assert call.source == "call_button"
    # A heartbeat may catch the head on its way: held for the alert, the frame not yet sent.
    beat = beat_where(telemetry, lambda b: b["ptz"]["mode"] == "alert"
                      and b["ptz"]["preset"] == CALL_PRESET,
                      "telemetry: ptz held at the alert preset")
    assert beat["ptz"]["alert_preset"] == CALL_PRESET
    assert 0 <= beat["ptz"]["resume_in_s"] <= 3

    wait_for(lambda: head.state().last_preset in TOUR, timeout=SLOW,
             what="the tour resumed after resume_after_s")
    beat_where(telemetry, lambda b: b["ptz"]["mode"] == "patrol" and b["ptz"]["preset"] in TOUR,
               "telemetry: ptz back on patrol")
    assert gotos(head, turned_at)[0] in TOUR
    assert CALL_PRESET not in gotos(head, turned_at), "one call turns the head once"

    frames = head.received()[stored:]
    assert [f.encode() for f in frames] == [goto_frame(f.data2) for f in frames], (
        "the node sends only go-to-preset frames for address 1")
    assert {f.data2 for f in frames} == {*TOUR, CALL_PRESET}
    state = head.state()
    assert (state.bad_checksum, state.garbage_bytes, state.other_address,
            state.unknown_preset, state.unsupported) == (0, 0, 0, 0, 0)


def test_serial_adapters_pulled_mid_stream_are_reported_and_recovered_from_while_calls_go_on(
    tmp_path: Path, broker: LocalBroker, head: SimulatedHead, gps: GpsSimulator,
    bus: SensorBusSimulator, hub: HubConsole, start_node: Callable[..., NodeProcess],
    telemetry: Listener,
) -> None:
    node = start_node(pole_config(tmp_path, broker, ptz=ptz_section(head),
                                  gps=gps_section(gps), modbus=modbus_section(bus)))
    beat_where(telemetry, lambda b: b["gps"]["state"] == "fix"
               and all(s["ok"] for s in b["sensors"].values()) and b["ptz"]["frames_sent"],
               "a pole with a GPS fix, sensor readings and a patrolling head")
    status_where(broker, lambda s: "GPS" not in reasons(s) and "sensor" not in reasons(s),
                 "a status without GPS or sensor problems")

    head.unplug()
    gps.unplug()
    bus.unplug()
    node.press()
    wait_for(lambda: alerts(hub, "call"), timeout=SLOW,
             what="the call at the hub with every adapter out")

    beat = beat_where(
        telemetry,
        lambda b: b["ptz"]["errors"] > 0 and b["gps"]["state"] == "offline"
        and b["gps"]["disconnects"] >= 1
        and all(not s["ok"] and s["errors"] for s in b["sensors"].values()),
        "telemetry: PTZ errors, GPS offline, sensors failing")
    assert beat["ptz"]["last_error"]
    assert beat["gps"]["last_error"]
    status = status_where(broker, lambda s: s["health"] == "degraded" and "GPS" in reasons(s)
                          and "sensor" in reasons(s),
                          "a retained status degraded by the GPS and the sensors")
    assert "PTZ" in reasons(status)
    assert alive(node)

    head.plug()
    gps.plug()
    bus.plug()
    beat_where(telemetry, lambda b: b["gps"]["state"] == "fix"
               and all(s["ok"] for s in b["sensors"].values()),
               "telemetry: a GPS fix and sensor readings again")
    # The call's preset still owed to the head goes out first, then the tour resumes.
    wait_for(lambda: head.state().last_preset in TOUR, timeout=SLOW,
             what="the head back on its tour")
    status_where(broker, lambda s: "GPS" not in reasons(s) and "sensor" not in reasons(s)
                 and "PTZ" not in reasons(s), "the retained status without the device problems")

    before = len(head.received())
    node.press()
    wait_for(lambda: CALL_PRESET in gotos(head, before), timeout=SLOW,
             what="the head obeying a call again")
    wait_for(lambda: len(alerts(hub, "call")) == 2, timeout=SLOW, what="the second call")
    assert alive(node), f"the node exited:\n{node.log()[-3000:]}"
    assert node.stop() == 0


def test_garbage_on_the_serial_lines_is_counted_not_fatal(
    tmp_path: Path, broker: LocalBroker, gps: GpsSimulator, bus: SensorBusSimulator,
    start_node: Callable[..., NodeProcess], telemetry: Listener,
) -> None:
    node = start_node(pole_config(tmp_path, broker, gps=gps_section(gps),
                                  modbus=modbus_section(bus)))
    clean = beat_where(telemetry, lambda b: b["gps"]["state"] == "fix"
                       and all(s["ok"] for s in b["sensors"].values()),
                       "a GPS fix and sensor readings")
    g = clean["gps"]
    assert (g["garbage_bytes"], g["bad_checksum"], g["partial"]) == (0, 0, 0)
    assert all(not s["errors"] for s in clean["sensors"].values())

    gps.inject(b"\x00\xff\xfe noise on the line \x07")
    gps.corrupt_next(1)  # one second's GGA and RMC spoiled: well inside stale_after_s
    gps.cut_next(1)
    bus.corrupt_replies(3)
    counted = len(telemetry.messages)
    beat = beat_where(
        telemetry, lambda b: b["gps"]["garbage_bytes"] > 0 and b["gps"]["bad_checksum"] >= 1
        and b["gps"]["partial"] >= 1
        and sum(s["errors"].get("bad_reply", 0) for s in b["sensors"].values()) >= 3,
        "telemetry counting the GPS garbage and the spoiled Modbus replies")
    assert beat["gps"]["sentences"] > g["sentences"]
    since = [json.loads(p) for _, p in telemetry.messages[counted:]]
    assert all(b["gps"]["state"] == "fix" for b in since), "the fix must survive the noise"

    spoiled = {name: s["errors"] for name, s in beat["sensors"].items()}
    later = beat_where(telemetry, lambda b: all(s["ok"] for s in b["sensors"].values()),
                       "every sensor read again after the noise")
    for name, s in later["sensors"].items():
        assert s["value"] is not None and s["error"] is None
        assert s["errors"].get("bad_reply", 0) >= spoiled[name].get("bad_reply", 0)
    assert later["gps"]["state"] == "fix"
    assert alive(node)


def test_cabinet_contacts_raise_alerts_and_a_flapping_tamper_switch_is_reported_once(
    tmp_path: Path, broker: LocalBroker, hub: HubConsole,
    start_node: Callable[..., NodeProcess], telemetry: Listener,
) -> None:
    gpio = {
        "inputs": [
            {"name": "tamper", "pin": TAMPER, "role": "tamper"},
            # normally closed on the pull-up: the pin reads high when the door opens
            {"name": "door", "pin": DOOR, "role": "door", "active_high": True},
            {"name": "ups_on_battery", "pin": UPS_ON_BATTERY, "role": "on_battery"},
        ],
        "flap": {"max_changes": 4, "window_s": 3},
    }
    node = start_node(pole_config(tmp_path, broker, gpio=gpio))
    node.pins.drive(DOOR, 0)  # the door is shut
    beat_where(telemetry, lambda b: not b["inputs"]["door"]["active"], "telemetry: door shut")

    node.pins.drive(DOOR, 1)
    [door] = wait_for(lambda: alerts(hub, "input", "door"), timeout=SLOW,
                      what="the door alert at the hub")
    beat_where(telemetry, lambda b: b["inputs"]["door"]["active"], "telemetry: door open")

    node.pins.drive(UPS_ON_BATTERY, 0)
    wait_for(lambda: alerts(hub, "input", "ups_on_battery"), timeout=SLOW,
             what="the UPS alert at the hub")
    on_battery = status_where(broker, lambda s: "on battery" in reasons(s),
                              "a status saying the pole runs on battery")
    assert on_battery["health"] == "degraded"
    node.pins.drive(UPS_ON_BATTERY, 1)
    status_where(broker, lambda s: "on battery" not in reasons(s), "the mains back in the status")

    for i in range(12):  # a loose wire: each level held well past the 20 ms debounce
        node.pins.drive(TAMPER, i % 2)  # closed (active) first
        time.sleep(0.1)
    wait_for(lambda: alerts(hub, "input_flapping", "tamper"), timeout=SLOW,
             what="the flapping alert at the hub")
    flapping = beat_where(telemetry, lambda b: b["inputs"]["tamper"]["flapping"],
                          "telemetry: tamper flapping")
    assert flapping["inputs"]["tamper"]["suppressed"] > 0
    status_where(broker, lambda s: "input tamper flapping" in reasons(s),
                 "the flapping tamper in the status")

    quiet = beat_where(telemetry, lambda b: not b["inputs"]["tamper"]["flapping"],
                       "telemetry: tamper quiet again after the flap window")
    assert quiet["inputs"]["tamper"]["changes"] == 12
    assert not quiet["inputs"]["tamper"]["active"]
    assert len(alerts(hub, "input_flapping", "tamper")) == 1
    plain = alerts(hub, "input", "tamper")
    assert 1 <= len(plain) <= 4, f"at most max_changes plain alerts, got {len(plain)}"
    assert [a.source for a in alerts(hub, "input")].count("door") == 1
    assert door.kind == "input"
    assert alive(node)


def test_a_call_switches_the_floodlight_on_for_its_time_and_the_fan_follows_the_cabinet(
    tmp_path: Path, broker: LocalBroker, bus: SensorBusSimulator, hub: HubConsole,
    start_node: Callable[..., NodeProcess], telemetry: Listener,
) -> None:
    gpio = {"outputs": [
        {"name": "floodlight", "pin": FLOODLIGHT, "on_alert_s": {"call_button": 2}},
        {"name": "cabinet_fan", "pin": CABINET_FAN},
    ]}
    climate = [{"output": "cabinet_fan", "mode": "cool", "on_at_c": 30, "off_at_c": 26,
                "sensor": "cabinet_temperature"}]
    node = start_node(pole_config(tmp_path, broker, gpio=gpio, climate=climate,
                                  modbus=modbus_section(bus)))
    beat_where(telemetry, lambda b: b["outputs"]["cabinet_fan"]["temperature_c"] == 21.5,
               "the fan's rule reading the cabinet at 21.5 °C")
    assert node.pins.read(FLOODLIGHT) == 0
    assert node.pins.read(CABINET_FAN) == 0

    node.press()
    wait_for(lambda: alerts(hub, "call"), timeout=SLOW, what="the call at the hub")
    wait_for(lambda: node.pins.read(FLOODLIGHT) == 1, timeout=SLOW, what="the floodlight on")
    wait_for(lambda: node.pins.read(FLOODLIGHT) == 0, timeout=SLOW,
             what="the floodlight off after its 2 s")
    light = beat_where(telemetry, lambda b: not b["outputs"]["floodlight"]["on"],
                       "telemetry: floodlight off")["outputs"]["floodlight"]
    assert light["activations"] == 1
    assert light["off_in_s"] is None

    def fan_at(temperature: float) -> Callable[[dict[str, Any]], bool]:
        return lambda b: b["outputs"]["cabinet_fan"]["temperature_c"] == temperature

    bus.set_climate(35, 50)
    beat_where(telemetry, fan_at(35), "the fan's rule reading 35 °C")
    wait_for(lambda: node.pins.read(CABINET_FAN) == 1, timeout=SLOW, what="the fan on at 35 °C")
    bus.set_climate(28, 50)
    beat = beat_where(telemetry, fan_at(28), "the fan's rule reading 28 °C")
    assert beat["outputs"]["cabinet_fan"]["on"], "between off_at_c and on_at_c the fan stays on"
    assert node.pins.read(CABINET_FAN) == 1
    bus.set_climate(24, 50)
    wait_for(lambda: node.pins.read(CABINET_FAN) == 0, timeout=SLOW, what="the fan off at 24 °C")
    fan = beat_where(telemetry, fan_at(24), "the fan's rule reading 24 °C")
    assert not fan["outputs"]["cabinet_fan"]["on"]
    assert fan["outputs"]["cabinet_fan"]["activations"] == 1
    assert fan["outputs"]["cabinet_fan"]["reason"] == ""
    assert light["activations"] == 1 and alive(node)


def test_alerts_carry_the_clock_state_the_gps_receiver_vouches_for(
    tmp_path: Path, broker: LocalBroker, gps: GpsSimulator, hub: HubConsole,
    start_node: Callable[..., NodeProcess], telemetry: Listener, alerts_on_the_wire: Listener,
) -> None:
    # The simulator's time is this machine's clock; the kernel may also be NTP-synchronised,
    # and then the node rightly names NTP as what vouches for its time.
    expected = "ntp" if clock.clock_synced() else "gps"
    node = start_node(pole_config(tmp_path, broker, gps=gps_section(gps)))
    beat = beat_where(telemetry, lambda b: b["gps"]["state"] == "fix"
                      and b["platform"]["clock_synced"], "a GPS fix and a synchronised clock")
    assert beat["platform"]["clock_source"] == expected
    assert abs(beat["gps"]["clock_offset_s"]) <= clock.GPS_AGREES_S

    node.press()
    wait_for(lambda: alerts(hub, "call"), timeout=SLOW, what="the call at the hub")
    [alert] = {p["id"]: p for p in alerts_on_the_wire.payloads()}.values()
    assert alert["clock_synced"] is True
    assert alert["clock_source"] == expected
    assert isinstance(alert["clock_offset_s"], int | float)
    assert abs(alert["clock_offset_s"]) <= clock.GPS_AGREES_S
    assert last_beat(telemetry)["platform"]["clock_source"] == alert["clock_source"]
