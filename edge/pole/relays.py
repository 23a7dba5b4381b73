"""The cabinet's output relays: floodlight, siren, fan, heater.

An alert switches on every relay whose `on_alert_s` names its source, for that many seconds
(the floodlight on a call, the siren on a tamper switch); the fan and heater are switched by
their climate rules (climate.py). Closing a relay switches it off: a restarting node never
leaves a siren on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from gpiozero.pins import Factory

from contract.pole import OutputStats
from drivers.gpio import Relay, Thermostat
from edge.config.pole import OutputPin

log = logging.getLogger(__name__)


class Outputs:
    """The cabinet's relays by name, in config order. Built whole or not at all: if a pin is
    taken, the relays claimed before it are given back before the error goes up."""

    def __init__(self, outputs: list[OutputPin], pins: Factory | None) -> None:
        self._outputs = outputs
        self.relays: dict[str, Relay] = {}
        try:
            for out in outputs:
                self.relays[out.name] = Relay(out.name, out.pin, active_high=out.active_high,
                                              pin_factory=pins)
        except BaseException:
            self.close()
            raise

    def on_alert(self, source: str) -> None:
        """Switch on each relay that `source`'s alerts switch, for its time."""
        for out in self._outputs:
            for_s = out.on_alert_s.get(source)
            if for_s is not None:
                self.relays[out.name].on(for_s)
                log.info("%s on for %.0f s (alert from %s)", out.name, for_s, source)

    def stats(self, thermostats: Mapping[str, Thermostat]) -> dict[str, OutputStats]:
        """Each relay, with the temperature and fail-safe reason of its climate rule if any."""
        stats = {}
        for name, relay in self.relays.items():
            rule = thermostats.get(name)
            off_in = relay.off_in_s
            stats[name] = OutputStats(
                on=relay.is_on, activations=relay.activations,
                off_in_s=round(off_in, 1) if off_in is not None else None,
                temperature_c=rule.last_temp_c if rule is not None else None,
                reason=rule.reason if rule is not None else "")
        return stats

    def close(self) -> None:
        for relay in self.relays.values():
            relay.close()  # off: a restarting node never leaves a siren on
