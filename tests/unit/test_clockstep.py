"""The suite's clock step moves only a process's wall clock, as a real NTP step does:
its monotonic clock, sleeps and timeouts carry on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.clockstep import ClockStep

CHILD = """
import json, sys, threading, time
from datetime import UTC, datetime
wall, mono = time.time(), time.monotonic()
print(json.dumps({"wall": wall, "now": datetime.now(UTC).timestamp()}), flush=True)
sys.stdin.readline()  # the test steps the clock meanwhile
time.sleep(0.05)  # the shim reads its offset again after 20 ms
threading.Event().wait(0.05)
print(json.dumps({"wall": time.time() - wall, "mono": time.monotonic() - mono}), flush=True)
"""


def test_a_step_back_moves_the_wall_clock_only(tmp_path: Path) -> None:
    clock = ClockStep(tmp_path)
    clock.step(-3600)
    child = subprocess.Popen([sys.executable, "-c", CHILD], env={**os.environ, **clock.env()},
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdin is not None and child.stdout is not None
    before = json.loads(child.stdout.readline())
    # An hour behind this process's clock (give or take the time it took to start).
    import time

    assert abs(before["wall"] - (time.time() - 3600)) < 60
    assert abs(before["now"] - before["wall"]) < 60  # datetime.now() is stepped too
    clock.step(-3600)
    child.stdin.write("\n")
    child.stdin.flush()
    after = json.loads(child.stdout.readline())
    assert child.wait() == 0
    assert -3600 - 60 < after["wall"] < -3600 + 60  # the wall clock went back another hour
    assert 0.1 <= after["mono"] < 60  # while the monotonic clock and the sleeps went on
