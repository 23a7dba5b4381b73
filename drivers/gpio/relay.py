"""A cabinet relay on one GPIO output: floodlight, siren, fan, heater; on, off, or on for a time."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

from gpiozero import DigitalOutputDevice
from gpiozero.pins import Factory

from drivers.lifecycle import Lifecycle

logger = logging.getLogger(__name__)


class Relay(Lifecycle):
    """A relay that switches a load in the cabinet, off at start-up.

    `on()` keeps it on until `off()`; `on(for_s=...)` switches it off by itself after that
    time, so a siren sounded for an alarm stops even if nobody calls `off()`. A timed `on`
    while already on only ever lengthens the time on: it moves a timed off later, never
    earlier, and leaves a relay switched on without a time on. The relay starts off and
    `close()` switches it off, so a node restart never leaves a siren sounding. Safe to use
    from any thread; one background thread per relay does the timed off.
    """

    def __init__(
        self,
        name: str,
        pin: int | str,
        *,
        active_high: bool = True,
        pin_factory: Factory | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.name = name
        self._clock = clock
        self._device = DigitalOutputDevice(
            pin, active_high=active_high, initial_value=False, pin_factory=pin_factory
        )
        self._pin_name = str(self._device.pin)
        self._cond = threading.Condition()
        self._off_at: float | None = None
        self._activations = 0
        self._start_thread(self._watch, f"relay-{name}")

    @property
    def pin_name(self) -> str:
        """The pin as the pin factory names it, e.g. "GPIO5"."""
        return self._pin_name

    @property
    def is_on(self) -> bool:
        """True while the relay is energised (the load is switched on)."""
        with self._cond:
            return bool(self._device.value)

    @property
    def activations(self) -> int:
        """How many times the relay went from off to on since start-up."""
        with self._cond:
            return self._activations

    @property
    def off_in_s(self) -> float | None:
        """Seconds until the timed off; None when off or on without a time."""
        with self._cond:
            if self._off_at is None or not self._device.value:
                return None
            return max(0.0, self._off_at - self._clock())

    def on(self, for_s: float | None = None) -> None:
        """Switch on; with `for_s`, switch off by itself that many seconds from now."""
        if for_s is not None and (not math.isfinite(for_s) or for_s <= 0):
            raise ValueError(
                f"relay {self.name!r}: for_s must be finite seconds > 0 (or None to stay on), "
                f"got {for_s!r}"
            )
        with self._cond:
            if self.closed:
                raise RuntimeError(f"relay {self.name!r} on {self._pin_name} is closed")
            was_on = bool(self._device.value)
            if for_s is None:
                self._off_at = None
            else:
                off_at = self._clock() + for_s
                if not was_on:
                    self._off_at = off_at
                elif self._off_at is not None:
                    self._off_at = max(self._off_at, off_at)
                # else: on without a time already; a timed on must not cut that short.
            if not was_on:
                self._device.on()
                self._activations += 1
            self._cond.notify()

    def off(self) -> None:
        """Switch off now and forget any timed off; does nothing once closed (it is off)."""
        with self._cond:
            if self.closed:
                return
            self._off_at = None
            self._device.off()
            self._cond.notify()

    def _interrupt(self) -> None:
        # close(): switch off, stop the thread, then release the pin.
        with self._cond:
            self._off_at = None
            self._device.off()
            self._cond.notify_all()

    def _release(self) -> None:
        self._device.close()

    def __repr__(self) -> str:
        if self.closed:
            state = "closed"
        elif not self.is_on:
            state = "off"
        else:
            off_in = self.off_in_s
            state = "on" if off_in is None else f"on, off in {off_in:.1f} s"
        return f"<Relay {self.name!r} on {self._pin_name} {state}>"

    def _watch(self) -> None:
        with self._cond:
            while not self.closed:
                if self._off_at is None:
                    self._cond.wait()
                    continue
                now = self._clock()
                if self._off_at > now:
                    self._cond.wait(self._off_at - now)
                    continue
                self._off_at = None
                self._device.off()
                logger.info("relay %s on %s: timed off", self.name, self._pin_name)
