"""The status lamp on a MockFactory pin, judged by the pin's recorded history."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from drivers.gpio import StatusLed
from tests.support.waiting import wait_for

PIN = 27
DOUBLE_BLINK = [(True, 0.05), (False, 0.05), (True, 0.05), (False, 0.3)]






@pytest.fixture
def led(factory: Any) -> Iterator[StatusLed]:
    with StatusLed(PIN, pin_factory=factory) as led:
        factory.pin(PIN).clear_states()
        yield led


def history(factory: Any) -> list[tuple[bool, float]]:
    """(level, seconds held) for each change after the first; MockPin stores time deltas."""
    states = factory.pin(PIN).states
    return [(s.state, after.timestamp) for s, after in itertools.pairwise(states[1:])]


def levels(factory: Any) -> list[bool]:
    return [s.state for s in factory.pin(PIN).states]


def test_on_and_off_switch_the_pin_before_returning(factory: Any, led: StatusLed) -> None:
    pin = factory.pin(PIN)
    assert pin.state is False
    led.on()
    assert pin.state is True
    assert led.current == ("on", ())
    led.off()
    assert pin.state is False
    assert led.current == ("off", ())


def test_a_steady_lamp_stays_as_set(factory: Any, led: StatusLed) -> None:
    led.on()
    time.sleep(0.2)
    assert levels(factory) == [False, True]


def test_an_active_low_lamp_is_lit_by_a_low_pin(factory: Any) -> None:
    with StatusLed(PIN, active_high=False, pin_factory=factory) as led:
        assert factory.pin(PIN).state is True
        led.on()
        assert factory.pin(PIN).state is False


def test_blink_alternates_lit_and_dark_for_at_least_the_asked_times(
    factory: Any, led: StatusLed
) -> None:
    led.blink(0.05, 0.08)
    assert wait_for(lambda: len(levels(factory)) >= 8)
    led.off()
    steps = history(factory)[:6]
    assert [lit for lit, _ in steps] == [True, False] * 3
    assert all(held >= (0.04 if lit else 0.07) for lit, held in steps)


def test_a_pattern_repeats_its_steps_in_order(factory: Any, led: StatusLed) -> None:
    led.pattern(DOUBLE_BLINK)
    assert wait_for(lambda: len(levels(factory)) >= 10, timeout=4.0)
    led.off()
    steps = history(factory)[:8]
    assert [lit for lit, _ in steps] == [True, False] * 4
    dark = [held for lit, held in steps if not lit]
    # Short gap, long gap, short gap, long gap: the long ones are the 0.3 s pauses.
    assert dark[1] >= 0.28 and dark[3] >= 0.28


def test_reapplying_the_pattern_every_tick_does_not_restart_it(
    factory: Any, led: StatusLed
) -> None:
    slow = [(True, 0.2), (False, 0.2)]
    led.pattern(slow)
    shown = led.current
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        led.pattern(slow)
        time.sleep(0.01)
    # A restart would relight it every tick and it would never have gone dark.
    assert levels(factory)[:3] == [False, True, False]
    assert led.current == shown


def test_a_change_takes_effect_at_once_and_the_old_pattern_stops(
    factory: Any, led: StatusLed
) -> None:
    led.blink(5.0, 5.0)
    assert factory.pin(PIN).state is True
    led.off()
    assert factory.pin(PIN).state is False
    led.pattern([(False, 5.0), (True, 5.0)])
    led.on()
    time.sleep(0.1)
    assert levels(factory) == [False, True, False, True]


def test_a_new_pattern_runs_on_its_own_timing_not_the_old_ones(
    factory: Any, led: StatusLed
) -> None:
    led.blink(5.0, 5.0)
    led.blink(0.02, 0.02)
    # Still sleeping out the old 5 s step would leave the lamp lit well past this wait.
    assert wait_for(lambda: len(levels(factory)) >= 6)


def test_one_thread_plays_every_pattern(led: StatusLed) -> None:
    def lamp_threads() -> int:
        return sum(t.name == "status-led" for t in threading.enumerate())

    before = lamp_threads()
    for on_s in (0.01, 0.02, 0.03):
        led.blink(on_s, 0.01)
        led.pattern(DOUBLE_BLINK)
        led.on()
    assert lamp_threads() == before == 1


@pytest.mark.parametrize("steps", [[], [(True, 0.0)], [(True, -1.0)], [(False, float("inf"))]])
def test_a_nonsense_pattern_is_refused(led: StatusLed, steps: list[tuple[bool, float]]) -> None:
    with pytest.raises(ValueError):
        led.pattern(steps)
    assert led.current == ("off", ())


def test_close_darkens_the_lamp_frees_the_pin_and_can_be_repeated(factory: Any) -> None:
    led = StatusLed(PIN, pin_factory=factory)
    led.blink(0.02, 0.02)
    led.close()
    led.close()
    assert factory.pin(PIN).state is False
    assert wait_for(lambda: all(t.name != "status-led" for t in threading.enumerate()))
    with pytest.raises(RuntimeError, match="closed"):
        led.on()
    StatusLed(PIN, pin_factory=factory).close()
