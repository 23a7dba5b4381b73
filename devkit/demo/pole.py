"""The demo's pole: the node as a real process on simulated pins, and a hand on its wiring
(call button, cabinet contacts, call LED, relays) through the pin simulator client.
DemoError, raised when the demo cannot go on, lives here too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from devkit.simulators.gpio import PinSimulatorClient
from edge.config import NodeConfig
from edge.config.model import InputPin

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 15.0  # SIGTERM → exit; the node needs a few seconds at most


class DemoError(Exception):
    """The demo cannot go on; the message says what happened and where to look."""


class Pole:
    """The demo node as a real process, and a hand on its wiring through the pin simulator."""

    def __init__(self, cfg: NodeConfig, config_path: Path, log_path: Path) -> None:
        self.cfg, self.config_path, self.log_path = cfg, config_path, log_path
        self.button, self.led_pin = cfg.gpio.call_button.pin, cfg.gpio.call_led.pin
        self.inputs = {i.name: i for i in cfg.gpio.inputs}
        self.relays = {o.name: o for o in cfg.gpio.outputs}
        tamper = self.inputs.get("tamper")
        if tamper is None:
            raise DemoError(f"{config_path}: the demo needs an input named 'tamper'")
        self.tamper_pin, self.tamper_active = tamper.pin, active_level(tamper)
        self.proc: subprocess.Popen[bytes] | None = None
        self.pins: PinSimulatorClient | None = None
        self.shut_at_start: list[str] = []  # inputs the node saw active, then at rest
        self.exit_code: int | None = None

    def start(self) -> None:
        socket = self.cfg.gpio.simulator_socket
        if socket is None:
            raise DemoError(f"{self.config_path} sets no gpio.simulator_socket: the demo "
                            "drives the node's pins through it")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603 (this Python running edge.cli, no shell)
                [sys.executable, "-m", "edge.cli", "run", "--config", str(self.config_path)],
                stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONFAULTHANDLER": "1"},  # SIGABRT dumps its stacks
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not socket.exists():
            self.check_alive()
            if time.monotonic() > deadline:
                raise DemoError(f"the node opened no pin simulator socket within "
                                f"{START_TIMEOUT_S:.0f} s; see {self.log_path}")
            time.sleep(0.05)
        self.pins = PinSimulatorClient(str(socket))
        self.shut_at_start = self.shut()

    def shut(self) -> list[str]:
        """Every cabinet contact at rest: door closed (a normally-closed contact, so its pin
        is driven low), tamper switch closed, mains on. Returns the inputs that were not."""
        moved = []
        for name, spec in self.inputs.items():
            rest = 1 - active_level(spec)
            if self._hand().read(spec.pin) != rest:
                self._hand().drive(spec.pin, rest)
                moved.append(name)
        return moved

    def check_alive(self) -> None:
        if self.proc is not None and self.exit_code is None and self.proc.poll() is not None:
            raise DemoError(f"the node exited by itself with code {self.proc.returncode}; "
                            f"see {self.log_path}")

    def _hand(self) -> PinSimulatorClient:
        if self.pins is None:
            raise DemoError("the node is not running")
        return self.pins

    def press(self) -> None:
        """A citizen's press: held a fifth of a second, the contact bouncing on both edges."""
        self._hand().press(self.button, hold_s=0.2, bounce=True)

    def set_tamper(self, tripped: bool) -> None:
        self.set_input("tamper", tripped)

    def set_input(self, name: str, active: bool) -> None:
        """Drive a cabinet contact to its active level (door open, on battery) or back."""
        level = active_level(self.inputs[name])
        self._hand().drive(self.inputs[name].pin, level if active else 1 - level)

    def relay_on(self, name: str) -> bool:
        """The relay's pin, read as the relay board sees it."""
        out = self.relays[name]
        return self._hand().read(out.pin) == (1 if out.active_high else 0)

    def led_lit(self) -> bool:
        return self._hand().read(self.led_pin) == 1

    def led(self, seconds: float, step_s: float = 0.04) -> str:
        """What the call LED shows over `seconds`: steady, off, fast blink or double blink."""
        samples: list[tuple[float, int]] = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            samples.append((time.monotonic(), self._hand().read(self.led_pin)))
            time.sleep(step_s)
        levels = [level for _, level in samples]
        if all(levels):
            return "steady"
        if not any(levels):
            return "off"
        longest_dark, dark_from = 0.0, None
        for at, level in [*samples, (time.monotonic(), 1)]:
            if not level and dark_from is None:
                dark_from = at
            elif level and dark_from is not None:
                longest_dark, dark_from = max(longest_dark, at - dark_from), None
        # fast blink is dark 0.25 s at a time; the no-link pattern is dark 0.9 s per cycle
        return "double blink" if longest_dark >= 0.6 else "fast blink"

    def stop(self) -> int | None:
        """SIGTERM, as systemd would: the node says offline and exits. Safe to call again."""
        if self.pins is not None:
            self.pins.close()
            self.pins = None
        if self.proc is None or self.exit_code is not None:
            return self.exit_code
        self.proc.terminate()
        try:
            self.exit_code = self.proc.wait(timeout=STOP_TIMEOUT_S)
            return self.exit_code
        except subprocess.TimeoutExpired:
            pass
        # hung: SIGABRT makes faulthandler write every thread's stack to the node log
        self.proc.send_signal(signal.SIGABRT)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.exit_code = self.proc.wait()
        return self.exit_code


def active_level(spec: InputPin) -> int:
    """The pin level at which the input is active: as configured, else the level its contact
    closes to (low against the pull-up)."""
    if spec.active_high is not None:
        return int(spec.active_high)
    return int(not spec.pull_up)
