"""The status lamp on the pole: steady, dark, blinking or a repeating pattern."""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from itertools import cycle

from gpiozero import DigitalOutputDevice
from gpiozero.pins import Factory

from drivers.lifecycle import Lifecycle

Steps = tuple[tuple[bool, float], ...]
Show = tuple[str, Steps]

_OFF: Show = ("off", ())
_ON: Show = ("on", ())


class StatusLed(Lifecycle):
    """A status LED that keeps showing what it was last told, until told something else.

    `on()`, `off()`, `blink()` and `pattern()` switch what the lamp shows; a change takes
    effect at once, and asking for what is already shown changes nothing (a running pattern is
    not restarted), so a caller may re-apply the desired state on every tick. Patterns repeat a
    sequence of (lit, seconds) steps forever, e.g. a double blink
    `[(True, .15), (False, .15), (True, .15), (False, .8)]`. One background thread plays them.
    """

    def __init__(
        self, pin: int | str, *, active_high: bool = True, pin_factory: Factory | None = None
    ) -> None:
        super().__init__()
        self._device = DigitalOutputDevice(
            pin, active_high=active_high, initial_value=False, pin_factory=pin_factory
        )
        self._lock = threading.Lock()
        self._changed = threading.Event()
        self._show: Show = _OFF
        self._start_thread(self._play, "status-led")

    @property
    def current(self) -> Show:
        """What is shown, as a hashable (mode, steps) pair, e.g. ("blink", ((True, .5), ...))."""
        with self._lock:
            return self._show

    @property
    def pin_name(self) -> str:
        """The pin as the pin factory names it, e.g. "GPIO27"."""
        return str(self._device.pin)

    def on(self) -> None:
        """Light the lamp steadily."""
        self._set(_ON)

    def off(self) -> None:
        """Switch the lamp off."""
        self._set(_OFF)

    def blink(self, on_s: float, off_s: float) -> None:
        """Blink: lit for `on_s`, dark for `off_s`, repeating; starts lit."""
        self._set(("blink", _checked_steps([(True, on_s), (False, off_s)])))

    def pattern(self, steps: Sequence[tuple[bool, float]]) -> None:
        """Repeat `steps`, each (lit, seconds), forever; starts with the first step."""
        self._set(("pattern", _checked_steps(steps)))

    def _interrupt(self) -> None:
        with self._lock:
            self._changed.set()

    def _release(self) -> None:
        # close(): switch the lamp off and release its pin.
        self._device.off()
        self._device.close()

    def __repr__(self) -> str:
        return f"<StatusLed {self.pin_name} {self.current[0]}>"

    def _set(self, show: Show) -> None:
        with self._lock:
            if self.closed:
                raise RuntimeError(f"status LED on {self.pin_name} is closed")
            if show == self._show:
                return
            self._show = show
            # Light or darken right here so the change is visible when the call returns.
            self._device.value = show == _ON or (bool(show[1]) and show[1][0][0])
            self._changed.set()

    def _play(self) -> None:
        while True:
            with self._lock:
                if self.closed:
                    return
                show = self._show
                self._changed.clear()
            if not show[1]:
                self._changed.wait()
                continue
            self._run_steps(show)

    def _run_steps(self, show: Show) -> None:
        steps = cycle(show[1])
        _, seconds = next(steps)  # `_set` already showed the first step
        while not self._changed.wait(seconds):
            lit, seconds = next(steps)
            with self._lock:
                if self.closed or self._show is not show:
                    return
                self._device.value = lit


def _checked_steps(steps: Sequence[tuple[bool, float]]) -> Steps:
    if not steps:
        raise ValueError("an LED pattern needs at least one (lit, seconds) step")
    checked: list[tuple[bool, float]] = []
    for lit, seconds in steps:
        if not math.isfinite(seconds) or seconds <= 0:
            raise ValueError(f"LED step durations must be finite seconds > 0, got {seconds!r}")
        checked.append((bool(lit), float(seconds)))
    return tuple(checked)
