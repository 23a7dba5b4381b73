"""The cabinet's fan and heater, each switched from a temperature reading with hysteresis."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Literal

from drivers.gpio.relay import Relay

Mode = Literal["cool", "heat"]


class Thermostat:
    """Switches a fan ("cool") or a heater ("heat") relay from the temperatures it is fed.

    A fan goes on at `on_at_c` or hotter and off at `off_at_c` or cooler; a heater goes on at
    `on_at_c` or colder and off at `off_at_c` or warmer. In between, the relay stays as it is,
    so a temperature hovering near one threshold does not wear out the relay. When no valid
    reading has come for `stale_after_s` (the sensor is dead or unplugged) it fails safe: a fan
    goes on, since overheating kills the Pi, and a heater goes off, since a heater stuck on is a
    fire risk; the next valid reading ends that. Not a thread: the node calls `update()` from
    its loop, from one thread.
    """

    def __init__(
        self,
        relay: Relay,
        *,
        mode: Mode,
        on_at_c: float,
        off_at_c: float,
        stale_after_s: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        where = f"thermostat on relay {relay.name!r}"
        if mode not in ("cool", "heat"):
            raise ValueError(f"{where}: mode must be 'cool' (fan) or 'heat' (heater), got {mode!r}")
        for field, value in (("on_at_c", on_at_c), ("off_at_c", off_at_c)):
            if not math.isfinite(value):
                raise ValueError(f"{where}: {field} must be a finite temperature, got {value!r}")
        if mode == "cool" and not on_at_c > off_at_c:
            raise ValueError(
                f"{where}: a fan needs on_at_c above off_at_c, got on_at_c={on_at_c!r} and "
                f"off_at_c={off_at_c!r}"
            )
        if mode == "heat" and not on_at_c < off_at_c:
            raise ValueError(
                f"{where}: a heater needs on_at_c below off_at_c, got on_at_c={on_at_c!r} and "
                f"off_at_c={off_at_c!r}"
            )
        if not math.isfinite(stale_after_s) or stale_after_s <= 0:
            raise ValueError(
                f"{where}: stale_after_s must be finite seconds > 0, got {stale_after_s!r}"
            )
        self._relay = relay
        self._mode = mode
        self._on_at_c = on_at_c
        self._off_at_c = off_at_c
        self._stale_after_s = stale_after_s
        self._clock = clock
        # No reading yet counts from start-up: the sensor gets stale_after_s to answer.
        self._read_at = clock()
        self._last_temp_c: float | None = None
        self._switches = 0
        self._reason = ""

    @property
    def on(self) -> bool:
        """Whether the fan or heater is on."""
        return self._relay.is_on

    @property
    def last_temp_c(self) -> float | None:
        """The last valid reading, however old; None until the first one."""
        return self._last_temp_c

    @property
    def switches(self) -> int:
        """How many times this thermostat switched the relay on or off."""
        return self._switches

    @property
    def reason(self) -> str:
        """Empty normally; says so while failing safe for want of readings."""
        return self._reason

    def update(self, temp_c: float | None) -> bool:
        """Take this tick's reading (None or NaN: none) and switch; returns whether it is on."""
        now = self._clock()
        want = self._relay.is_on
        if temp_c is not None and math.isfinite(temp_c):
            self._read_at = now
            self._last_temp_c = float(temp_c)
            self._reason = ""
            want = self._wanted(float(temp_c), want)
        elif now - self._read_at >= self._stale_after_s:
            want = self._mode == "cool"
            self._reason = (
                f"no reading for {now - self._read_at:.0f} s: fail-safe {'on' if want else 'off'}"
            )
        if want != self._relay.is_on:
            if want:
                self._relay.on()
            else:
                self._relay.off()
            self._switches += 1
        return self._relay.is_on

    def __repr__(self) -> str:
        state = "on" if self.on else "off"
        extra = f" ({self._reason})" if self._reason else ""
        return f"<Thermostat {self._mode} {self._relay.name!r} {state}{extra}>"

    def _wanted(self, temp_c: float, is_on: bool) -> bool:
        if self._mode == "cool":
            if temp_c >= self._on_at_c:
                return True
            if temp_c <= self._off_at_c:
                return False
        else:
            if temp_c <= self._on_at_c:
                return True
            if temp_c >= self._off_at_c:
                return False
        return is_on
