"""Cabinet relays (siren, floodlight, fan) on MockFactory pins: real threads, real time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from drivers.gpio import Relay
from tests.support.waiting import wait_for

PIN = 5


@pytest.fixture
def make_relay(factory: Any) -> Iterator[Callable[..., Relay]]:
    with ExitStack() as stack:

        def make(**kwargs: Any) -> Relay:
            return stack.enter_context(Relay("siren", PIN, pin_factory=factory, **kwargs))

        yield make


def level(factory: Any) -> bool:
    return bool(factory.pin(PIN).state)


def test_a_relay_starts_off_and_switches_its_pin_before_returning(
    factory: Any, make_relay: Callable[..., Relay]
) -> None:
    siren = make_relay()
    assert not siren.is_on and level(factory) is False
    assert siren.pin_name == "GPIO5"
    siren.on()
    assert siren.is_on and level(factory) is True
    assert siren.off_in_s is None
    siren.on()  # already on: not a new activation
    siren.off()
    assert not siren.is_on and level(factory) is False
    assert siren.activations == 1


def test_an_active_low_relay_board_is_energised_by_a_low_pin(
    factory: Any, make_relay: Callable[..., Relay]
) -> None:
    # Most opto-isolated relay boards pull in when their input is low.
    floodlight = make_relay(active_high=False)
    assert level(factory) is True
    floodlight.on()
    assert level(factory) is False
    floodlight.off()
    assert level(factory) is True


def test_a_siren_sounded_for_a_time_stops_by_itself(
    factory: Any, make_relay: Callable[..., Relay]
) -> None:
    siren = make_relay()
    siren.on(for_s=0.1)
    assert siren.is_on and level(factory) is True
    off_in = siren.off_in_s
    assert off_in is not None and 0 < off_in <= 0.1
    assert wait_for(lambda: not siren.is_on, what="the timed off")
    assert level(factory) is False
    assert siren.off_in_s is None
    siren.on(for_s=0.05)  # a new alarm sounds it again
    assert siren.activations == 2
    assert wait_for(lambda: not siren.is_on, what="the second timed off")


def test_a_longer_timed_on_extends_and_a_shorter_one_does_not_cut_it_short(
    make_relay: Callable[..., Relay],
) -> None:
    siren = make_relay()
    siren.on(for_s=0.1)
    siren.on(for_s=60.0)
    siren.on(for_s=0.05)
    time.sleep(0.3)
    assert siren.is_on
    off_in = siren.off_in_s
    assert off_in is not None and off_in > 30
    assert siren.activations == 1


def test_on_without_a_time_stays_on_and_a_later_timed_on_does_not_end_it(
    make_relay: Callable[..., Relay],
) -> None:
    floodlight = make_relay()
    floodlight.on(for_s=0.05)
    floodlight.on()
    assert floodlight.off_in_s is None
    floodlight.on(for_s=0.05)
    time.sleep(0.3)
    assert floodlight.is_on
    assert floodlight.off_in_s is None


def test_off_cancels_a_timed_off(make_relay: Callable[..., Relay]) -> None:
    siren = make_relay()
    siren.on(for_s=0.1)
    siren.off()
    assert siren.off_in_s is None
    siren.on()
    time.sleep(0.3)
    assert siren.is_on  # the old timer did not switch off the new, untimed on


@pytest.mark.parametrize("for_s", [0.0, -1.0, float("inf"), float("nan")])
def test_a_nonsense_duration_is_refused_naming_the_relay(
    make_relay: Callable[..., Relay], for_s: float
) -> None:
    siren = make_relay()
    with pytest.raises(ValueError, match="relay 'siren': for_s"):
        siren.on(for_s=for_s)
    assert not siren.is_on and siren.activations == 0


def test_one_thread_per_relay_however_many_timed_ons(make_relay: Callable[..., Relay]) -> None:
    def relay_threads() -> int:
        return sum(t.name == "relay-siren" for t in threading.enumerate())

    siren = make_relay()

    def alarms() -> None:
        for i in range(50):
            siren.on(for_s=0.01 * (i % 3 + 1))

    callers = [threading.Thread(target=alarms) for _ in range(4)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert relay_threads() == 1
    assert wait_for(lambda: not siren.is_on, what="the timed off after many calls")


def test_close_switches_off_frees_the_pin_and_can_be_repeated(factory: Any) -> None:
    siren = Relay("siren", PIN, pin_factory=factory)
    siren.on(for_s=60.0)
    siren.close()
    siren.close()
    assert level(factory) is False
    assert wait_for(lambda: all(t.name != "relay-siren" for t in threading.enumerate()))
    siren.off()  # off is off, closed or not
    with pytest.raises(RuntimeError, match="closed"):
        siren.on()
    Relay("siren", PIN, pin_factory=factory).close()
