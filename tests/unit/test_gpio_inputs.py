"""Cabinet inputs (door contact, tamper switch, UPS relay) on MockFactory pins."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from drivers.gpio import DigitalInput
from drivers.gpio.inputs import FlapLimit, FlapVerdict
from tests.support.waiting import wait_for

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


# Flapping: a loose wire or a failing UPS relay must not flood the hub.

REPORT, START, SUPPRESS = FlapVerdict.REPORT, FlapVerdict.START, FlapVerdict.SUPPRESS


def test_the_change_one_past_the_limit_within_the_window_starts_flapping() -> None:
    limit = FlapLimit(max_changes=3, window_s=60.0)
    assert [limit.change(t) for t in (0.0, 10.0, 20.0)] == [REPORT] * 3
    assert limit.change(59.0) is START
    assert limit.flapping
    assert [limit.change(t) for t in (70.0, 80.0)] == [SUPPRESS] * 2
    assert (limit.suppressed, limit.episodes) == (3, 1)


def test_changes_spread_wider_than_the_window_never_flap() -> None:
    limit = FlapLimit(max_changes=3, window_s=60.0)
    # Never more than three in any 60 s: a change exactly 60 s back is already outside.
    assert [limit.change(t) for t in (0.0, 30.0, 50.0, 60.0, 90.0, 110.0, 120.0)] == [REPORT] * 7
    assert not limit.flapping


def test_flapping_ends_only_after_a_whole_quiet_window_and_can_start_again() -> None:
    limit = FlapLimit(max_changes=1, window_s=10.0)
    limit.change(0.0)
    assert limit.change(1.0) is START
    assert limit.quiet_deadline() == 11.0
    limit.change(8.0)  # still chattering: the quiet window starts again
    assert not limit.settle(17.9)
    assert limit.settle(18.0)
    assert not limit.flapping and limit.quiet_deadline() is None
    assert limit.change(30.0) is REPORT
    assert limit.change(31.0) is START
    assert (limit.suppressed, limit.episodes) == (3, 2)


@pytest.mark.parametrize(
    ("max_changes", "window_s", "field"),
    [(0, 60.0, "flap_max_changes"), (3, 0.0, "flap_window_s"), (3, float("nan"), "flap_window_s")],
)
def test_a_nonsense_flap_limit_is_refused_naming_the_input(
    factory: Any, max_changes: int, window_s: float, field: str
) -> None:
    with pytest.raises(ValueError, match=rf"input 'ups-battery': {field}"):
        DigitalInput(
            "ups-battery",
            PIN,
            flap_max_changes=max_changes,
            flap_window_s=window_s,
            pin_factory=factory,
        )
    # Refused before the pin was claimed.
    DigitalInput("ups-battery", PIN, pin_factory=factory).close()


def record_flapping(device: DigitalInput) -> list[str]:
    seen = record(device)
    device.when_flapping = lambda flapping: seen.append("flapping" if flapping else "settled")
    return seen


def toggle(device: DigitalInput, pin: Any, times: int) -> None:
    """Open and close the contact, each change confirmed before the next edge."""
    for _ in range(times):
        expected = device.changes + 1
        if device.is_active:
            pin.drive_high()
        else:
            pin.drive_low()

        def changed(n: int = expected) -> bool:
            return device.changes == n

        wait_for(changed, what=f"change {expected}")


def test_a_flapping_door_contact_says_so_once_then_reports_its_settled_state_when_quiet(
    factory: Any, make_input: Callable[..., DigitalInput]
) -> None:
    door = make_input(flap_max_changes=2, flap_window_s=1.0)
    seen = record_flapping(door)
    pin = factory.pin(PIN)
    toggle(door, pin, 5)  # open, shut, open (one too many), shut, open: left open
    assert seen == ["active", "inactive", "flapping"]
    assert door.flapping
    assert (door.changes, door.suppressed, door.flap_episodes) == (5, 3, 1)
    # No further edge: time alone ends it, and the listener learns the door is open.
    assert wait_for(lambda: len(seen) == 5, what="flapping to end")
    assert seen == ["active", "inactive", "flapping", "settled", "active"]
    assert not door.flapping and door.is_active
    pin.drive_high()
    assert wait_for(lambda: seen[-1] == "inactive", what="the next change reported")
    assert (door.changes, door.suppressed, door.flap_episodes) == (6, 3, 1)


def test_an_edge_after_a_quiet_window_ends_flapping_first_even_before_the_watch_wakes(
    factory: Any, make_input: Callable[..., DigitalInput]
) -> None:
    now = [0.0]
    door = make_input(flap_max_changes=1, flap_window_s=60.0, clock=lambda: now[0])
    seen = record_flapping(door)
    pin = factory.pin(PIN)
    pin.drive_low()
    now[0] = 1.0
    pin.drive_high()
    now[0] = 2.0  # the release is confirmed by the contact's thread, and is one too many
    assert wait_for(lambda: seen == ["active", "flapping"], what="flapping")
    # A minute later by this clock, though the quiet watch (waiting in real seconds) still
    # sleeps: the door opening again is reported after the shut state it settled in.
    now[0] = 62.0
    pin.drive_low()
    assert seen == ["active", "flapping", "settled", "inactive", "active"]
    assert not door.flapping and door.suppressed == 1


def test_an_input_settling_in_the_state_last_reported_reports_only_that_flapping_ended(
    factory: Any, make_input: Callable[..., DigitalInput]
) -> None:
    ups = make_input(flap_max_changes=2, flap_window_s=1.0)
    seen = record_flapping(ups)
    toggle(ups, factory.pin(PIN), 4)  # on battery, off, on (flapping), off
    assert wait_for(lambda: not ups.flapping, what="flapping to end")
    time.sleep(0.1)
    assert seen == ["active", "inactive", "flapping", "settled"]
    assert not ups.is_active


def test_exactly_the_allowed_changes_are_all_reported_and_one_more_flaps(
    factory: Any, make_input: Callable[..., DigitalInput]
) -> None:
    pir = make_input(flap_max_changes=4)  # in the default 60 s window
    seen = record_flapping(pir)
    pin = factory.pin(PIN)
    toggle(pir, pin, 4)
    assert seen == ["active", "inactive", "active", "inactive"]
    assert not pir.flapping
    toggle(pir, pin, 1)
    assert seen[-1] == "flapping"
    assert pir.flapping and pir.suppressed == 1


def test_without_a_flap_limit_every_change_is_reported_however_fast(
    factory: Any, make_input: Callable[..., DigitalInput]
) -> None:
    door = make_input()
    seen = record_flapping(door)
    toggle(door, factory.pin(PIN), 12)
    assert seen == ["active", "inactive"] * 6
    assert (door.flapping, door.suppressed, door.flap_episodes) == (False, 0, 0)
    assert not any(t.name == "input-door-flap" for t in threading.enumerate())


def test_a_failing_flapping_handler_is_logged_and_the_input_goes_on(
    factory: Any, make_input: Callable[..., DigitalInput], caplog: pytest.LogCaptureFixture
) -> None:
    door = make_input(flap_max_changes=1, flap_window_s=0.5)
    seen = record(door)

    def broken(flapping: bool) -> None:
        raise RuntimeError("hub unreachable")

    door.when_flapping = broken
    with caplog.at_level(logging.ERROR):
        toggle(door, factory.pin(PIN), 2)  # open, shut (flapping)
        assert wait_for(lambda: seen == ["active", "inactive"], what="settled state")
    assert [r.getMessage() for r in caplog.records] == [
        "input door on GPIO22: when_flapping raised"
    ] * 2


def test_close_stops_the_quiet_watch_even_while_flapping(
    factory: Any, make_input: Callable[..., DigitalInput]
) -> None:
    door = make_input(flap_max_changes=1)
    toggle(door, factory.pin(PIN), 2)
    assert door.flapping
    door.close()
    door.close()
    assert wait_for(lambda: all(t.name != "input-door-flap" for t in threading.enumerate()))
