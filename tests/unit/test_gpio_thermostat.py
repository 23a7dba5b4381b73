"""The cabinet fan and heater thermostats, driving real relays on MockFactory pins."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest

from drivers.gpio import Relay, Thermostat

FAN_PIN, HEATER_PIN = 6, 13


class Clock:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fan(factory: Any) -> Iterator[Relay]:
    with Relay("fan", FAN_PIN, pin_factory=factory) as relay:
        yield relay


@pytest.fixture
def heater(factory: Any) -> Iterator[Relay]:
    with Relay("heater", HEATER_PIN, pin_factory=factory) as relay:
        yield relay


def feed(thermostat: Thermostat, temps: list[float]) -> list[bool]:
    return [thermostat.update(t) for t in temps]


def test_a_fan_starts_at_its_on_threshold_and_stops_only_at_its_off_threshold(
    factory: Any, fan: Relay, clock: Clock
) -> None:
    cooling = Thermostat(fan, mode="cool", on_at_c=65.0, off_at_c=55.0, clock=clock)
    rising = [50.0, 55.0, 60.0, 64.9, 65.0, 70.0]
    assert feed(cooling, rising) == [False, False, False, False, True, True]
    assert factory.pin(FAN_PIN).state is True
    falling = [64.9, 60.0, 55.1, 55.0, 50.0]
    assert feed(cooling, falling) == [True, True, True, False, False]
    assert factory.pin(FAN_PIN).state is False
    assert cooling.switches == 2
    assert cooling.last_temp_c == 50.0
    assert cooling.reason == ""


def test_a_heater_starts_at_its_on_threshold_and_stops_only_at_its_off_threshold(
    factory: Any, heater: Relay, clock: Clock
) -> None:
    heating = Thermostat(heater, mode="heat", on_at_c=0.0, off_at_c=5.0, clock=clock)
    falling = [10.0, 5.0, 0.1, 0.0, -8.0]
    assert feed(heating, falling) == [False, False, False, True, True]
    assert factory.pin(HEATER_PIN).state is True
    rising = [0.1, 3.0, 4.9, 5.0, 12.0]
    assert feed(heating, rising) == [True, True, True, False, False]
    assert factory.pin(HEATER_PIN).state is False
    assert heating.switches == 2


def test_a_temperature_hovering_between_the_thresholds_switches_nothing(
    fan: Relay, clock: Clock
) -> None:
    cooling = Thermostat(fan, mode="cool", on_at_c=65.0, off_at_c=55.0, clock=clock)
    feed(cooling, [64.0, 56.0] * 20)
    assert not cooling.on and cooling.switches == 0
    cooling.update(66.0)
    feed(cooling, [56.0, 64.0] * 20)
    assert cooling.on and cooling.switches == 1
    assert fan.activations == 1


def test_a_dead_sensor_runs_the_fan_after_the_stale_time_and_a_reading_ends_that(
    factory: Any, fan: Relay, clock: Clock
) -> None:
    cooling = Thermostat(
        fan, mode="cool", on_at_c=65.0, off_at_c=55.0, stale_after_s=120.0, clock=clock
    )
    cooling.update(40.0)
    clock.t += 119.0
    assert cooling.update(None) is False
    assert cooling.reason == ""
    clock.t += 1.0
    assert cooling.update(math.nan) is True
    assert cooling.reason == "no reading for 120 s: fail-safe on"
    assert factory.pin(FAN_PIN).state is True
    assert cooling.last_temp_c == 40.0
    clock.t += 30.0
    cooling.update(None)
    assert cooling.reason == "no reading for 150 s: fail-safe on"
    # Back between the thresholds: the fan keeps running until the cabinet has cooled.
    assert cooling.update(60.0) is True
    assert cooling.reason == ""
    assert cooling.update(50.0) is False
    assert cooling.switches == 2


def test_a_dead_sensor_switches_a_heater_off_after_the_stale_time(
    factory: Any, heater: Relay, clock: Clock
) -> None:
    heating = Thermostat(
        heater, mode="heat", on_at_c=0.0, off_at_c=5.0, stale_after_s=60.0, clock=clock
    )
    assert heating.update(-10.0) is True
    clock.t += 59.0
    assert heating.update(None) is True
    clock.t += 1.0
    assert heating.update(None) is False
    assert heating.reason == "no reading for 60 s: fail-safe off"
    assert factory.pin(HEATER_PIN).state is False
    assert heating.update(-10.0) is True
    assert heating.reason == ""


def test_a_sensor_that_never_answers_fails_safe_counted_from_start_up(
    fan: Relay, clock: Clock
) -> None:
    cooling = Thermostat(
        fan, mode="cool", on_at_c=65.0, off_at_c=55.0, stale_after_s=120.0, clock=clock
    )
    assert cooling.update(None) is False
    assert cooling.last_temp_c is None
    clock.t += 120.0
    assert cooling.update(None) is True
    assert cooling.reason == "no reading for 120 s: fail-safe on"


@pytest.mark.parametrize(
    ("mode", "on_at_c", "off_at_c", "message"),
    [
        ("cool", 55.0, 65.0, "a fan needs on_at_c above off_at_c, got on_at_c=55.0 and "),
        ("cool", 60.0, 60.0, "a fan needs on_at_c above off_at_c"),
        ("heat", 5.0, 0.0, "a heater needs on_at_c below off_at_c, got on_at_c=5.0 and "),
        ("heat", 5.0, math.inf, "off_at_c must be a finite temperature"),
        ("warm", 5.0, 10.0, "mode must be 'cool'"),
    ],
)
def test_thresholds_the_wrong_way_round_are_refused_naming_them(
    fan: Relay, mode: Any, on_at_c: float, off_at_c: float, message: str
) -> None:
    with pytest.raises(ValueError, match="thermostat on relay 'fan': ") as refused:
        Thermostat(fan, mode=mode, on_at_c=on_at_c, off_at_c=off_at_c)
    assert message in str(refused.value)
    assert not fan.is_on
