"""The cabinet's contact inputs: the door and tamper switches, the UPS's on-battery and
battery-low lines, a PIR... each debounced on its GPIO pin.

An input that alerts raises its alert when it trips and its restoral when it goes back; one
that flaps (a loose wire, a failing contact) is said once, as flapping, and its changes are
held back until it is quiet. A flapping input, or the UPS on battery or its battery low,
is something a crew should look at.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from gpiozero.pins import Factory

from contract.payloads import AlertKind
from contract.pole import InputStats
from drivers.gpio import DigitalInput
from edge.config.model import GpioSection

log = logging.getLogger(__name__)

# What the cabinet asks the alarm path to raise: (kind, source).
AlertFn = Callable[[AlertKind, str], None]


class Contacts:
    """The cabinet's inputs, in config order. Built whole or not at all: if a pin is taken,
    the pins claimed before it are given back before the error goes up."""

    def __init__(self, gpio: GpioSection, pins: Factory | None, on_alert: AlertFn,
                 debounce_s: float) -> None:
        self._gpio = gpio
        self._on_alert = on_alert
        self.inputs: list[DigitalInput] = []
        try:
            for spec in gpio.inputs:
                device = DigitalInput(
                    spec.name, spec.pin, pull_up=spec.pull_up, active_high=spec.active_high,
                    debounce_s=debounce_s, flap_max_changes=gpio.flap.max_changes,
                    flap_window_s=gpio.flap.window_s, pin_factory=pins)
                device.when_flapping = self._flapping_handler(spec.name, spec.alert)
                if spec.alert:
                    device.when_activated = self._alert_handler(AlertKind.INPUT, spec.name)
                    device.when_deactivated = self._alert_handler(AlertKind.INPUT_RESTORED,
                                                                  spec.name)
                self.inputs.append(device)
        except BaseException:
            self.close()
            raise

    def _alert_handler(self, kind: AlertKind, name: str) -> Callable[[], None]:
        return lambda: self._on_alert(kind, name)

    def _flapping_handler(self, name: str, alerts: bool) -> Callable[[bool], None]:
        def flapping(on: bool) -> None:
            if on:
                log.warning("input %s is flapping (over %d changes in %.0f s): its changes "
                            "are held back until it is quiet", name,
                            self._gpio.flap.max_changes, self._gpio.flap.window_s)
                if alerts:
                    self._on_alert(AlertKind.INPUT_FLAPPING, name)
            else:
                log.info("input %s is quiet again", name)

        return flapping

    def stats(self) -> dict[str, InputStats]:
        return {i.name: InputStats(active=i.is_active, changes=i.changes, flapping=i.flapping,
                                   suppressed=i.suppressed) for i in self.inputs}

    def problems(self) -> list[str]:
        """A flapping input; the UPS on battery, its battery low."""
        out: list[str] = []
        roles = {i.name: i.role for i in self._gpio.inputs}
        for i in self.inputs:
            if i.flapping:
                out.append(f"input {i.name} flapping")
            elif i.is_active and roles[i.name] == "on_battery":
                out.append(f"on battery ({i.name})")
            elif i.is_active and roles[i.name] == "battery_low":
                out.append(f"battery low ({i.name})")
        return out

    def close(self) -> None:
        for device in self.inputs:
            device.close()
