"""A technician's config file: good ones load, bad ones name each bad field and why."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge.config import ConfigError, NodeConfig, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "docs" / "config").glob("*.yaml"))

GOOD = """
node:
  id: korosten-0007
  site: Korosten, Shevchenka St
  location: {lat: 50.95, lon: 28.64}
hub: {host: hub.example, port: 8883}
gpio:
  call_button: {pin: 17}
  call_led: {pin: 27}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="pole.yaml")
    return info.value.problems


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_the_shipped_examples_are_valid(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.node.id


def test_defaults_fill_what_a_technician_leaves_out() -> None:
    cfg = parse_config(GOOD)
    assert cfg.timings.debounce_ms == 30
    assert cfg.hub.tls is None
    assert cfg.gpio.inputs == []
    assert str(cfg.data_dir) == "/var/lib/edge"


def test_a_port_out_of_range_names_the_field_the_range_and_the_value() -> None:
    assert problems(GOOD.replace("port: 8883", "port: 70000")) == [
        "hub.port: must be 1..65535, got 70000"
    ]


def test_every_bad_field_is_reported_at_once() -> None:
    bad = GOOD.replace("id: korosten-0007", "id: Korosten_7").replace("lat: 50.95", "lat: 95")
    bad = bad.replace("{pin: 27}", "{pin: 99}")
    found = problems(bad)
    assert len(found) == 3
    assert found[0].startswith("node.id: must be lower-case letters") and "'Korosten_7'" in found[0]
    assert "node.location.lat: must be -90..90, got 95" in found
    assert "gpio.call_led.pin: must be 0..53, got 99" in found


def test_a_typo_is_an_error_with_a_suggestion() -> None:
    found = problems(GOOD.replace("port: 8883", "prot: 8883"))
    assert found == ["hub.prot: unknown field (did you mean 'port'?)"]


def test_a_missing_section_is_named() -> None:
    found = problems(GOOD.replace("hub: {host: hub.example, port: 8883}\n", ""))
    assert found == ["hub: required field is missing"]


def test_two_devices_on_one_pin_is_an_error() -> None:
    found = problems(GOOD.replace("{pin: 27}", "{pin: 17}"))
    assert found == ["gpio: GPIO 17 is used by both call_button and call_led"]


def test_the_simulator_socket_is_only_for_simulated_pins() -> None:
    text = GOOD.replace("gpio:\n", "gpio:\n  simulator_socket: /tmp/pins.sock\n")
    assert problems(text) == [
        "gpio: simulator_socket needs pin_factory: mock (it drives simulated pins)"
    ]


def test_wrong_types_show_the_value() -> None:
    found = problems(GOOD + "timings: {debounce_ms: fast}\n")
    assert found[0].startswith("timings.debounce_ms: ") and found[0].endswith("got 'fast'")


def test_broken_yaml_gives_the_line() -> None:
    found = problems("node: [\n  id: x\n")
    assert found[0].startswith("line ") and "not valid YAML" in found[0]


def test_a_file_that_is_not_a_mapping() -> None:
    assert problems("- just\n- a list\n") == [
        "the file must be a YAML mapping of sections (node, hub, ...)"
    ]


def test_check_config_exits_non_zero_and_names_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "pole.yaml"
    bad.write_text(GOOD.replace("port: 8883", "port: 70000"))
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    run = subprocess.run(
        [sys.executable, "-m", "edge.cli", "check-config", str(good), str(bad)],
        capture_output=True, text=True, check=False,
    )
    assert run.returncode == 1
    assert "hub.port: must be 1..65535, got 70000" in run.stderr
    assert f"{good}: ok (node korosten-0007" in run.stdout


def test_the_published_json_schema_is_current() -> None:
    published = json.loads((ROOT / "docs" / "config" / "node.schema.json").read_text())
    assert published == NodeConfig.model_json_schema(), "run `make contract`"


# --- the pole's hardware beyond the call button ---------------------------------------

POLE = GOOD + """\
  inputs:
    - {name: tamper, pin: 22, role: tamper}
    - {name: pir, pin: 24, role: motion, alert: false}
  outputs:
    - {name: floodlight, pin: 12, on_alert_s: {call_button: 300}}
    - {name: cabinet_fan, pin: 16}
"""

MODBUS = """
modbus:
  port: /dev/ttyUSB1
  registers:
    - {name: cabinet_temperature, slave: 1, kind: input, address: 1, type: int16, scale: 0.1}
"""


def test_the_demo_config_wires_every_pole_device() -> None:
    cfg = load_config(ROOT / "docs" / "config" / "demo-node.yaml")
    assert [o.name for o in cfg.gpio.outputs] == ["floodlight", "cabinet_fan"]
    assert cfg.gpio.flap.max_changes == 6
    assert [(r.output, r.sensor) for r in cfg.climate] == [("cabinet_fan", "cabinet_temperature")]
    assert cfg.ptz is not None and cfg.ptz.alert_presets == {"call_button": 10, "tamper": 11}
    assert cfg.gps is not None
    assert cfg.modbus is not None and len(cfg.modbus.registers) == 4
    assert cfg.gpio.alert_sources == {"call_button", "tamper", "door", "ups_on_battery"}


def test_the_example_config_wires_every_pole_device() -> None:
    cfg = load_config(ROOT / "docs" / "config" / "example-node.yaml")
    roles = {i.name: i.role for i in cfg.gpio.inputs}
    assert roles["ups_on_battery"] == "on_battery" and roles["ups_battery_low"] == "battery_low"
    pir = next(i for i in cfg.gpio.inputs if i.name == "pir")
    assert (pir.pull_up, pir.active_high, pir.alert) == (None, True, False)
    assert [r.mode for r in cfg.climate] == ["cool", "heat"]
    assert cfg.health.wear_warn_pct == 80
    assert cfg.ptz is not None and cfg.gps is not None and cfg.modbus is not None


def test_a_pole_without_its_hardware_sections_gets_safe_defaults() -> None:
    cfg = parse_config(GOOD)
    assert cfg.gpio.outputs == [] and cfg.climate == []
    assert (cfg.gpio.flap.max_changes, cfg.gpio.flap.window_s) == (10, 60.0)
    assert cfg.ptz is None and cfg.gps is None and cfg.modbus is None
    assert (cfg.health.soc_temp_warn_c, cfg.health.soc_temp_fail_c) == (80.0, 90.0)


def test_an_input_on_an_external_resistor_must_say_its_active_level() -> None:
    text = POLE.replace("{name: pir, pin: 24, role: motion,",
                        "{name: pir, pin: 24, role: motion, pull_up: null,")
    assert problems(text) == [
        "gpio.inputs.1: input pir: without the internal pull-up (pull_up: null) say which "
        "level is active (active_high: true or false)"]
    fixed = text.replace("pull_up: null,", "pull_up: null, active_high: true,")
    pir = parse_config(fixed).gpio.inputs[1]
    assert (pir.pull_up, pir.active_high) == (None, True)


def test_an_unknown_input_role_is_named_with_the_value() -> None:
    found = problems(POLE.replace("role: tamper", "role: smoke"))
    assert len(found) == 1
    assert found[0].startswith("gpio.inputs.0.role: ") and found[0].endswith("got 'smoke'")
    assert "'on_battery'" in found[0]


def test_a_flap_limit_out_of_range_is_named() -> None:
    text = POLE + "  flap: {max_changes: 1, window_s: 0}\n"
    found = problems(text)
    assert found[0] == "gpio.flap.max_changes: must be 2..1000, got 1"
    assert found[1].startswith("gpio.flap.window_s: ") and found[1].endswith("got 0")
    assert len(found) == 2


def test_an_output_on_an_inputs_pin_is_an_error_naming_both() -> None:
    found = problems(POLE.replace("{name: cabinet_fan, pin: 16}", "{name: cabinet_fan, pin: 22}"))
    assert found == ["gpio: GPIO 22 is used by both inputs.tamper and outputs.cabinet_fan"]


def test_two_outputs_with_one_name_is_an_error() -> None:
    found = problems(POLE.replace("{name: cabinet_fan, pin: 16}", "{name: floodlight, pin: 16}"))
    assert found == ["gpio: output names must be unique, got ['floodlight', 'floodlight']"]


def test_an_input_cannot_take_the_call_buttons_name() -> None:
    found = problems(POLE.replace("{name: tamper, pin: 22", "{name: call_button, pin: 22"))
    assert found == ["gpio: an input cannot be named 'call_button': that is the button"]


def test_a_relay_switched_by_an_unknown_alert_source_is_an_error() -> None:
    found = problems(POLE.replace("{call_button: 300}", "{call_button: 300, door: 60}"))
    assert found == ["gpio: outputs.floodlight.on_alert_s: no alert source named door; "
                     "sources are call_button, tamper"]
    # An input that does not alert switches nothing either.
    found = problems(POLE.replace("{call_button: 300}", "{pir: 60}"))
    assert found[0].startswith("gpio: outputs.floodlight.on_alert_s: no alert source named pir")


def test_a_relay_time_out_of_range_is_named() -> None:
    found = problems(POLE.replace("{call_button: 300}", "{call_button: 0}"))
    assert len(found) == 1 and found[0].startswith("gpio.outputs.0.on_alert_s.call_button: ")
    assert "greater than 0" in found[0]


@pytest.mark.parametrize(("rule", "expected"), [
    ("{output: cabinet_fan, mode: cool, on_at_c: 30, off_at_c: 34}",
     "climate.0: a cooling rule switches on above off: on_at_c (30.0) must be higher than "
     "off_at_c (34.0)"),
    ("{output: cabinet_fan, mode: heat, on_at_c: 5, off_at_c: 2}",
     "climate.0: a heating rule switches on below off: on_at_c (5.0) must be lower than "
     "off_at_c (2.0)"),
], ids=["cool", "heat"])
def test_a_climate_rule_with_its_hysteresis_backwards_is_an_error(rule: str, expected: str) -> None:
    assert problems(POLE + f"climate:\n  - {rule}\n") == [expected]


@pytest.mark.parametrize(("rules", "expected"), [
    (["{output: heater, mode: heat, on_at_c: -5, off_at_c: 2}"],
     "climate[0].output: no gpio output named 'heater'"),
    (["{output: cabinet_fan, mode: cool, on_at_c: 40, off_at_c: 34}",
      "{output: cabinet_fan, mode: cool, on_at_c: 50, off_at_c: 44}"],
     "climate[1].output: 'cabinet_fan' already has a climate rule"),
    (["{output: floodlight, mode: cool, on_at_c: 40, off_at_c: 34}"],
     "climate[0].output: 'floodlight' is switched by alerts (on_alert_s); a fan or heater "
     "needs a relay of its own"),
    (["{output: cabinet_fan, mode: cool, on_at_c: 40, off_at_c: 34, sensor: cabinet_temp}"],
     "climate[0].sensor: 'cabinet_temp' is neither 'soc' nor a modbus register"),
], ids=["no-such-output", "two-rules", "alert-relay", "no-such-sensor"])
def test_a_climate_rule_that_points_nowhere_names_the_rule_and_the_field(
        rules: list[str], expected: str) -> None:
    text = POLE + MODBUS + "climate:\n" + "".join(f"  - {r}\n" for r in rules)
    found = problems(text)
    assert len(found) == 1 and found[0].endswith(expected), found


def test_a_climate_rule_may_follow_a_modbus_register() -> None:
    text = POLE + MODBUS + ("climate:\n  - {output: cabinet_fan, mode: cool, on_at_c: 40, "
                            "off_at_c: 34, sensor: cabinet_temperature}\n")
    assert parse_config(text).climate[0].sensor == "cabinet_temperature"


def test_a_ptz_preset_for_an_unknown_alert_source_is_an_error() -> None:
    text = POLE + "ptz:\n  port: /dev/ttyUSB0\n  alert_presets: {call_button: 10, pir: 12}\n"
    found = problems(text)
    assert len(found) == 1 and found[0].endswith("ptz.alert_presets: no alert source named pir")
    ok = POLE + "ptz:\n  port: /dev/ttyUSB0\n  alert_presets: {call_button: 10, tamper: 11}\n"
    assert parse_config(ok).ptz is not None


def test_a_ptz_preset_out_of_range_is_named() -> None:
    text = POLE + "ptz:\n  port: /dev/ttyUSB0\n  tour: [{preset: 0, dwell_s: 10}]\n"
    assert problems(text) == ["ptz.tour.0.preset: must be 1..255, got 0"]


def test_two_modbus_registers_with_one_name_is_an_error() -> None:
    text = POLE + MODBUS + "    - {name: cabinet_temperature, slave: 1, address: 2}\n"
    assert problems(text) == [
        "modbus: register names must be unique; repeated: cabinet_temperature"]


def test_a_modbus_bus_without_registers_is_an_error() -> None:
    found = problems(POLE + "modbus: {port: /dev/ttyUSB1, registers: []}\n")
    assert len(found) == 1 and found[0].startswith("modbus.registers: ")


@pytest.mark.parametrize(("health", "expected"), [
    ("{soc_temp_warn_c: 85, soc_temp_fail_c: 85}",
     "health: soc_temp_fail_c (85.0) must be above soc_temp_warn_c (85.0)"),
    ("{disk_free_warn_pct: 5, disk_free_fail_pct: 8}",
     "health: disk_free_fail_pct (8.0) must be below disk_free_warn_pct (5.0)"),
    ("{wear_warn_pct: 5}", "health.wear_warn_pct: must be 10..110, got 5"),
], ids=["soc", "disk", "wear"])
def test_health_thresholds_out_of_order_name_both(health: str, expected: str) -> None:
    assert problems(GOOD + f"health: {health}\n") == [expected]


def test_an_infinite_threshold_is_refused_before_the_node_starts() -> None:
    text = POLE + "climate:\n  - {output: cabinet_fan, mode: cool, on_at_c: .inf, off_at_c: 34}\n"
    found = problems(text)
    assert len(found) == 1 and found[0].startswith("climate.0.on_at_c: "), found


def test_a_register_whose_low_is_above_its_high_is_an_error() -> None:
    text = POLE + MODBUS + ("    - {name: ups_battery, slave: 2, address: 0, low: 50, "
                            "high: 10}\n")
    found = problems(text)
    assert len(found) == 1 and found[0].endswith(
        "register ups_battery: low (50) must be below high (10)"), found


def test_the_old_name_of_the_backlog_section_still_loads_and_check_config_says_to_rename_it(
        tmp_path: Path) -> None:
    old = GOOD + "outbox: {max_messages: 1000, telemetry_keep_s: 30}\n"
    warnings: list[str] = []
    cfg = parse_config(old, source="pole.yaml", warnings=warnings)
    assert (cfg.backlog.max_messages, cfg.backlog.telemetry_keep_s) == (1000, 30)
    assert warnings == ["outbox: the old name of the 'backlog' section; rename it to 'backlog'"]
    path = tmp_path / "pole.yaml"
    path.write_text(old)
    run = subprocess.run([sys.executable, "-m", "edge.cli", "check-config", str(path)],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert "warning: outbox: the old name of the 'backlog' section" in run.stderr
    assert f"{path}: ok" in run.stdout


def test_both_the_old_and_the_new_name_of_a_section_is_an_error() -> None:
    found = problems(GOOD + "outbox: {max_messages: 1000}\nbacklog: {max_messages: 2000}\n")
    assert found == ["outbox: the old name of the 'backlog' section, which is there too: keep "
                     "only 'backlog'"]
