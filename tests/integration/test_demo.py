"""The demo, run as a user runs it (`edge-demo`, here --fast --plain): a real broker, a real
node process with simulated serial devices, the hub console and its evidence store; every
press and contact change reaches the hub once and is acknowledged, including the call made
while the broker was down; the clip around the first call, recorded by the node, reaches the
evidence store and verifies; the PTZ head patrols and turns to the call button, the fan
follows the cabinet's temperature, a mains failure shows at the hub; and the summary says
so."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def summary_counts(out: str) -> dict[str, int]:
    """The SUMMARY section's rows whose value starts with a number: label → number."""
    assert "\nSUMMARY\n" in out, f"the demo printed no summary:\n{out}"
    rows: dict[str, int] = {}
    for line in out.split("\nSUMMARY\n", 1)[1].splitlines():
        m = re.match(r"^  (\S.*?)\s{2,}(-?\d+)\b", line)
        if m:
            rows[m.group(1)] = int(m.group(2))
    return rows


def run_demo() -> tuple[int, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "devkit.demo", "--fast", "--plain"], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,  # so a hung run can be stopped with its node and broker
    )
    try:
        out, _ = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # the demo stops its node and broker on SIGTERM
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        pytest.fail(f"the demo did not finish within 180 s:\n{out}")
    for kept in re.findall(r"^node log: (.+)$", out, re.MULTILINE):
        with contextlib.suppress(OSError):
            Path(kept).unlink()
    return proc.returncode, out


@pytest.fixture(scope="module")
def demo() -> tuple[int, str]:
    """One demo run, shared by the tests that read its output."""
    return run_demo()


@pytest.mark.slow
def test_every_press_reaches_the_hub_once_and_is_acked_even_through_a_broker_outage(
        demo: tuple[int, str]) -> None:
    code, out = demo

    assert code == 0, f"the demo failed:\n{out}"
    s = summary_counts(out)
    presses, trips = s["presses made"], s["tamper trips"] + s["mains failures (UPS on battery)"]
    assert presses >= 3 and trips == 2
    restorals = s["contacts back at rest"]
    assert restorals == 3, out  # the door shut at the start, the tamper switch, the mains
    assert s["call alerts raised by the node"] == presses, out
    assert s["input alerts raised by the node"] == trips, out
    assert s["restorals raised by the node"] == restorals, out
    assert s["alerts delivered to the hub"] == presses + trips + restorals, out
    assert s["acknowledged"] == s["alerts delivered to the hub"], out
    assert s["sequence gaps"] == 0, out
    assert s["malformed messages"] == 0, out
    assert s["node exit code"] == 0, out
    # the story a user reads: the outage was staged, seen on the LED, and the call got through
    assert "broker stopped" in out
    assert "LED double blink: no link" in out, out
    assert re.search(r"the outage call \(seq \d+\) reached the hub .* once, and was acknowledged",
                     out), out
    assert "OK: every press reached the hub exactly once" in out


@pytest.mark.slow
def test_the_clip_around_the_first_call_is_recorded_uploaded_and_verifies(
        demo: tuple[int, str]) -> None:
    code, out = demo

    assert code == 0, f"the demo failed:\n{out}"
    s = summary_counts(out)
    assert s["clips requested by the hub"] == 1, out
    assert s["clips delivered and verified"] == 1, out
    # the story a user reads: asked for around the first call, checked with the pole's key
    first = re.search(r"hub received call alert seq (\d+)", out)
    assert first, out
    assert f"hub asks demo-0001 for the clip of call seq {first[1]}: camera street" in out, out
    assert "the hub checks the upload with the pole's public evidence key" in out, out
    told = re.search(r"clip of call seq (\d+): ([\d.]+) s, ([\d.]+) MB, sha256 [0-9a-f]{12}…, "
                     r"manifest signature and (\d+) segment hashes verified", out)
    assert told, out
    assert told[1] == first[1]
    assert float(told[3]) > 0 and int(told[4]) >= 3, out  # 12 s of 4 s segments
    assert "CLIP         demo-0001 clip" in out and "verified: signed by the pole" in out, out
    assert "DID NOT VERIFY" not in out and "did not arrive verified" not in out, out
    assert "OK: the clip around the first call arrived and verified" in out


def summary_rows(out: str) -> dict[str, str]:
    """The SUMMARY section's rows: label → value as printed."""
    rows: dict[str, str] = {}
    for line in out.split("\nSUMMARY\n", 1)[1].splitlines():
        m = re.match(r"^  (\S.*?)\s{2,}(\S.*)$", line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


@pytest.mark.slow
def test_the_ptz_head_relays_sensors_gps_and_power_do_as_configured(
        demo: tuple[int, str]) -> None:
    code, out = demo

    assert code == 0, f"the demo failed:\n{out}"
    rows = summary_rows(out)
    for check in ("PTZ patrol before the calls", "sensors and GPS at the hub",
                  "PTZ head turned on the first call", "floodlight on the first call",
                  "PTZ tour resumed after the alerts", "cabinet fan followed the temperature",
                  "mains failure: alerts, degraded status"):
        assert rows[check].startswith("yes: "), f"{check}: {rows.get(check)}\n{out}"
    assert rows["PTZ head turned on the first call"] == "yes: to preset 10; hub saw alert mode"
    assert rows["cabinet fan followed the temperature"] == "yes: on at 33 °C, off at 22 °C"
    # the story a user reads, the device and the hub's view of it side by side
    assert "the simulated head went 1→2→3 and is at preset" in out, out
    assert re.search(r"the hub reads the cabinet's Modbus sensors: cabinet_temperature 21\.5 °C, "
                     r"cabinet_humidity 48 %RH, ups_battery 87 %", out), out
    assert "GPS fix at 50.2547, 28.6587 with 9 satellites" in out, out
    assert ("the PTZ head turned to the call button's preset 10 (the simulated head is there); "
            "the hub's telemetry says: PTZ alert, preset 10") in out, out
    assert "floodlight relay on (GPIO 12) for 8 s" in out, out
    assert "the PTZ head turned to the tamper preset 11" in out, out
    assert re.search(r"the tour resumed: the head is back at preset [123]; the hub's telemetry "
                     r"says: PTZ patrol", out), out
    assert "cabinet_fan relay on (GPIO 16); the hub's telemetry says: cabinet_fan on at 33" in out
    assert "hub received input alert seq" in out and "from ups_on_battery" in out, out
    assert re.search(r"HEALTH +demo-0001 degraded: on battery \(ups_on_battery\)", out), out
    assert re.search(r"the node's retained status at the hub: degraded: on battery "
                     r"\(ups_on_battery\)", out), out
    back = re.findall(r"the node's status at the hub: (.*)$", out, re.MULTILINE)
    assert back and "on battery" not in back[-1], out
    assert "OK: the pole's hardware did as configured" in out
