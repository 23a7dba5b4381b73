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
