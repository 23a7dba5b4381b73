"""The node under systemd: the unit file is valid, READY=1 and WATCHDOG=1 arrive on a real
NOTIFY_SOCKET, and watchdog pings stop while the node cannot store alerts."""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.node import NodeProcess
from tests.support.paths import ROOT
from tests.support.waiting import wait_for

UNIT = ROOT / "systemd" / "edge-node.service"


def test_the_unit_file_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # The only change: ExecStart points at this checkout's edge-node instead of the
    # image's /opt path, because verify requires the executable to exist.
    exe = Path(sys.executable).parent / "edge-node"
    assert exe.exists()
    text = UNIT.read_text()
    assert "ExecStart=/opt/safecity-edge/bin/edge-node run" in text
    unit = tmp_path / "edge-node.service"
    unit.write_text(text.replace("/opt/safecity-edge/bin/edge-node", str(exe)))
    run = subprocess.run(["systemd-analyze", "verify", str(unit)],
                         capture_output=True, text=True, check=False)
    # verify exits 0 on some bad keys and only warns: any output is a failure here
    assert run.returncode == 0 and run.stderr.strip() == "", run.stderr


def test_the_unit_declares_what_the_node_relies_on() -> None:
    lines = {line.split("=", 1)[0]: line.split("=", 1)[1]
             for line in UNIT.read_text().splitlines() if "=" in line and not line.startswith("#")}
    assert lines["Type"] == "notify"
    assert int(lines["WatchdogSec"]) > 0
    assert lines["Restart"] == "always"
    assert lines["ProtectSystem"] == "strict"
    assert lines["ReadWritePaths"] == "/var/lib/edge"
    assert lines["NoNewPrivileges"] == "yes"
    assert lines["User"] == "edge" and "gpio" in lines["SupplementaryGroups"].split()
    # A pole whose link is down at boot must take calls at once, not after
    # systemd-networkd-wait-online gives up (two minutes).
    assert "network-online.target" not in lines.get("After", "") + lines.get("Wants", "")


def test_the_shipped_watchdog_hands_a_hung_systemd_to_the_pi_hardware_watchdog() -> None:
    import configparser

    conf = configparser.ConfigParser()
    conf.optionxform = str  # type: ignore[assignment,method-assign]
    conf.read(ROOT / "systemd" / "system.conf.d" / "10-edge-watchdog.conf")
    manager = conf["Manager"]
    for key in ("RuntimeWatchdogSec", "RebootWatchdogSec"):
        value = manager[key]
        assert value.endswith("s") and value[:-1].isdigit(), f"{key}={value}"
        # bcm2835-wdt counts at most 15 s; anything longer is refused by the driver.
        assert 0 < int(value[:-1]) <= 15, f"{key}={value}"
    node_watchdog = int(next(line.split("=", 1)[1] for line in UNIT.read_text().splitlines()
                             if line.startswith("WatchdogSec=")))
    assert node_watchdog > 0


def test_the_unit_may_open_the_serial_adapters_and_nothing_else_of_dev() -> None:
    allowed = [line.split("=", 1)[1] for line in UNIT.read_text().splitlines()
               if line.startswith("DeviceAllow=")]
    assert "DevicePolicy=closed" in UNIT.read_text()
    assert sorted(allowed) == ["char-gpiochip rw", "char-ttyACM rw", "char-ttyAMA rw",
                               "char-ttyS rw", "char-ttyUSB rw"]
    groups = next(line.split("=", 1)[1] for line in UNIT.read_text().splitlines()
                  if line.startswith("SupplementaryGroups="))
    assert set(groups.split()) == {"gpio", "dialout"}


class NotifySocket:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)

    def collect(self, seconds: float) -> list[str]:
        out: list[str] = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            with contextlib.suppress(TimeoutError):
                out += self.sock.recv(4096).decode().splitlines()
        return out

    def wait_for(self, line: str, timeout: float = 15.0) -> list[str]:
        seen: list[str] = []
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            seen += self.collect(0.1)
            if line in seen:
                return seen
        raise AssertionError(f"no {line!r} on NOTIFY_SOCKET within {timeout} s; got {seen}")


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    n = NotifySocket(tmp_path / "notify.sock")
    yield n
    n.sock.close()


def test_ready_then_watchdog_pings_only_while_alerts_can_be_stored(
    start_node: Callable[..., NodeProcess], notify: NotifySocket, tmp_path: Path
) -> None:
    node = start_node(env={"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "1000000"})
    notify.wait_for("READY=1")
    outbox = tmp_path / "data" / "outbox.sqlite"
    assert outbox.exists(), "READY=1 before the outbox was open"
    for _ in range(2):  # pinging, not one ping at start
        notify.wait_for("WATCHDOG=1")

    lock = sqlite3.connect(outbox, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # as if the card stalled: the outbox cannot be written
    try:
        notify.collect(3.0)  # a ping already under way may still arrive
        assert "WATCHDOG=1" not in notify.collect(3.0), "pinged while alerts could not be stored"
        wait_for(lambda: "withholding watchdog pings" in node.log(), what="the reason in the log")
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    notify.wait_for("WATCHDOG=1")

    assert node.proc is not None
    node.proc.terminate()
    assert "STOPPING=1" in notify.wait_for("STOPPING=1")
    assert node.proc.wait(timeout=15) == 0
