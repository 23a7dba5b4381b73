"""Cabinet inputs (door contact, tamper switch) on MockFactory pins."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from drivers.gpio import DigitalInput
from tests.waiting import wait_for

PIN = 22






@pytest.fixture
def make_input(factory: Any) -> Iterator[Callable[..., DigitalInput]]:
    with ExitStack() as stack:

        def make(**kwargs: Any) -> DigitalInput:
            kwargs.setdefault("debounce_s", 0.02)
            return stack.enter_context(DigitalInput("door", PIN, pin_factory=factory, **kwargs))

        yield make


def record(device: DigitalInput) -> list[str]:
    changes: list[str] = []
    device.when_activated = lambda: changes.append("active")
    device.when_deactivated = lambda: changes.append("inactive")
    return changes


def test_a_contact_closing_to_ground_is_active_and_its_opening_is_debounced(
    factory: Any, make_input: Callable[..., DigitalInput]
) -> None:
    door = make_input()
    changes = record(door)
    pin = factory.pin(PIN)
    assert not door.is_active
    pin.drive_low()
    assert changes == ["active"]
    assert door.is_active
    pin.drive_high()
    # Still active until the contact has stayed open for the debounce time.
    assert door.is_active
    assert wait_for(lambda: changes == ["active", "inactive"])
    assert door.changes == 2


def test_a_chattering_door_contact_is_one_change_each_way(
    factory: Any, make_input: Callable[..., DigitalInput]
) -> None:
    door = make_input()
    changes = record(door)
    pin = factory.pin(PIN)
    for _ in range(4):
        pin.drive_low()
        pin.drive_high()
    pin.drive_low()
    time.sleep(0.1)
    assert changes == ["active"]
    for _ in range(4):
        pin.drive_high()
        pin.drive_low()
    pin.drive_high()
    assert wait_for(lambda: len(changes) == 2)
    time.sleep(0.05)
    assert changes == ["active", "inactive"]


def test_a_normally_closed_contact_on_a_pull_up_is_active_when_the_pin_is_high(
    factory: Any, make_input: Callable[..., DigitalInput]
) -> None:
    # Tamper loop: closed (pin low) while the cabinet is intact; opening it lets the pull-up win.
    tamper = make_input(active_high=True)
    changes = record(tamper)
    pin = factory.pin(PIN)
    assert tamper.is_active  # the pull-up holds the pin high before the loop closes
    pin.drive_low()
    assert wait_for(lambda: changes == ["inactive"])
    assert not tamper.is_active
    pin.drive_high()
    assert changes == ["inactive", "active"]


def test_the_level_at_start_is_not_reported_as_a_change(
    make_input: Callable[..., DigitalInput],
) -> None:
    tamper = make_input(active_high=True)
    time.sleep(0.1)
    assert tamper.is_active
    assert tamper.changes == 0


def test_an_externally_pulled_pin_needs_its_active_level(
    factory: Any, make_input: Callable[..., DigitalInput]
) -> None:
    with pytest.raises(ValueError, match="active_high"):
        DigitalInput("mains", PIN, pull_up=None, pin_factory=factory)
    mains = make_input(pull_up=None, active_high=True)
    changes = record(mains)
    pin = factory.pin(PIN)
    assert pin.pull == "floating"
    pin.drive_high()
    assert changes == ["active"]


def test_a_held_input_reports_nothing_more_however_long_it_stays(
    factory: Any, make_input: Callable[..., DigitalInput]
) -> None:
    door = make_input(debounce_s=0.01)
    changes = record(door)
    factory.pin(PIN).drive_low()
    time.sleep(0.3)
    assert changes == ["active"]
    assert door.changes == 1
