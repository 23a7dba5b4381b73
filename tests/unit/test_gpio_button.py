"""The call button on MockFactory pins: real gpiozero devices, real threads, real time."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from gpiozero.pins.mock import MockPin

from drivers.gpio import CallButton
from tests.support.waiting import wait_for

PIN = 17






@pytest.fixture
def closing() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


@pytest.fixture
def make_button(factory: Any, closing: ExitStack) -> Callable[..., CallButton]:
    def make(**kwargs: Any) -> CallButton:
        return closing.enter_context(CallButton(PIN, pin_factory=factory, **kwargs))

    return make


class HeldClosedPin(MockPin):  # type: ignore[misc]  # gpiozero has no type hints: MockPin is Any
    """A pin whose button is already held down (to ground) when the device opens it."""

    def _set_pull(self, value: str) -> None:
        super()._set_pull(value)
        # MockPin follows its pull resistor; a closed contact to ground overrides it.
        self.drive_low()


def chatter(pin: Any, final_low: bool) -> None:
    """A contact burst of five edges, ending at the given level."""
    for low in (final_low, not final_low, final_low, not final_low, final_low):
        pin.drive_low() if low else pin.drive_high()


def test_a_press_calls_when_pressed_in_the_thread_that_saw_the_edge(
    factory: Any, make_button: Callable[..., CallButton]
) -> None:
    button = make_button()
    seen: list[str] = []
    button.when_pressed = lambda: seen.append(threading.current_thread().name)
    factory.pin(PIN).drive_low()
    # Synchronous: the callback has run before drive_low returned.
    assert seen == [threading.current_thread().name]
    assert button.is_pressed
    assert button.presses == 1


def test_a_bouncy_press_and_release_is_one_press_and_one_release(
    factory: Any, make_button: Callable[..., CallButton]
) -> None:
    button = make_button(debounce_s=0.02)
    pressed: list[None] = []
    released: list[float] = []
    button.when_pressed = lambda: pressed.append(None)
    button.when_released = released.append
    pin = factory.pin(PIN)
    chatter(pin, final_low=True)
    time.sleep(0.1)
    chatter(pin, final_low=False)
    assert wait_for(lambda: len(released) == 1)
    assert len(pressed) == 1
    assert released[0] >= 0.09
    assert not button.is_pressed
    time.sleep(0.05)
    assert (len(pressed), len(released), button.presses) == (1, 1, 1)


def test_the_release_is_confirmed_by_the_buttons_thread_without_another_edge(
    factory: Any, make_button: Callable[..., CallButton]
) -> None:
    button = make_button(debounce_s=0.02)
    threads: list[str] = []
    button.when_released = lambda duration: threads.append(threading.current_thread().name)
    pin = factory.pin(PIN)
    pin.drive_low()
    pin.drive_high()
    assert button.is_pressed
    assert wait_for(lambda: threads == ["call-button"])
    assert not button.is_pressed


def test_holding_reports_long_press_then_stuck_then_release(
    factory: Any, make_button: Callable[..., CallButton]
) -> None:
    button = make_button(debounce_s=0.01, long_press_s=0.1, stuck_after_s=0.25)
    order: list[str] = []
    button.when_pressed = lambda: order.append("pressed")
    button.when_long_pressed = lambda: order.append("long")
    button.when_stuck = lambda: order.append("stuck")
    button.when_released = lambda duration: order.append("released")
    pin = factory.pin(PIN)
    pin.drive_low()
    assert wait_for(lambda: "stuck" in order)
    time.sleep(0.1)
    pin.drive_high()
    assert wait_for(lambda: "released" in order)
    assert order == ["pressed", "long", "stuck", "released"]


def test_a_button_held_at_boot_raises_no_call_but_is_reported_stuck(
    factory: Any, make_button: Callable[..., CallButton]
) -> None:
    pin = factory.pin(PIN, pin_class=HeldClosedPin)
    stuck = threading.Event()
    released: list[float] = []
    button = make_button(long_press_s=0.05, stuck_after_s=0.15, debounce_s=0.01)
    button.when_stuck = stuck.set
    button.when_released = released.append
    assert button.is_pressed
    assert stuck.wait(2.0)
    assert button.presses == 0
    pin.drive_high()
    assert wait_for(lambda: len(released) == 1)
    assert not button.is_pressed


def wakeups(thread: threading.Thread) -> int:
    """How many times the kernel has woken `thread` from a sleep (Linux)."""
    with open(f"/proc/self/task/{thread.native_id}/status") as status:
        for line in status:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches in /proc status")


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux /proc")
def test_the_idle_thread_sleeps_instead_of_polling(
    factory: Any, make_button: Callable[..., CallButton]
) -> None:
    button = make_button(debounce_s=0.01, long_press_s=10.0, stuck_after_s=20.0)
    (watcher,) = [t for t in threading.enumerate() if t.name == "call-button"]
    pin = factory.pin(PIN)
    pin.drive_low()
    time.sleep(0.05)
    held = wakeups(watcher)
    time.sleep(0.3)
    # Held, the next deadline (long press) is 10 s away: nothing to wake up for meanwhile.
    assert wakeups(watcher) - held <= 1
    pin.drive_high()
    assert wait_for(lambda: not button.is_pressed)
    time.sleep(0.05)
    idle = wakeups(watcher)
    time.sleep(0.3)
    # Released, there is no deadline at all; a poller would wake dozens of times.
    assert wakeups(watcher) - idle <= 1


def test_an_exception_in_a_callback_is_logged_and_the_button_keeps_working(
    factory: Any, make_button: Callable[..., CallButton], caplog: pytest.LogCaptureFixture
) -> None:
    button = make_button(debounce_s=0.01)
    released: list[float] = []

    def broken() -> None:
        raise RuntimeError("hub unreachable")

    button.when_pressed = broken
    button.when_released = released.append
    pin = factory.pin(PIN)
    with caplog.at_level(logging.ERROR):
        pin.drive_low()
    assert "GPIO17" in caplog.text
    assert "hub unreachable" in caplog.text
    pin.drive_high()
    assert wait_for(lambda: len(released) == 1)
    pin.drive_low()
    pin.drive_high()
    assert wait_for(lambda: len(released) == 2)
    assert button.presses == 2


def test_a_button_wired_to_pull_the_pin_high_is_pressed_by_a_high_level(
    factory: Any, make_button: Callable[..., CallButton]
) -> None:
    button = make_button(pull_up=False)
    pin = factory.pin(PIN)
    assert not button.is_pressed
    pin.drive_high()
    assert button.is_pressed
    assert button.presses == 1


def test_close_stops_the_thread_frees_the_pin_and_can_be_repeated(factory: Any) -> None:
    before = {t.name for t in threading.enumerate()}
    with CallButton(PIN, pin_factory=factory) as button:
        assert "call-button" in {t.name for t in threading.enumerate()} - before
        pressed: list[None] = []
        button.when_pressed = lambda: pressed.append(None)
    button.close()
    assert wait_for(lambda: "call-button" not in {t.name for t in threading.enumerate()})
    factory.pin(PIN).drive_low()
    assert pressed == []
    # The pin is free again: a new button can claim it.
    CallButton(PIN, pin_factory=factory).close()


def test_bounce_whose_edge_arrives_late_is_not_a_release_and_a_new_press(
    factory: Any, make_button: Callable[..., CallButton]
) -> None:
    # On a Pi, edges reach us from the GPIO library's callback thread; a starved process gets
    # them late. Stage that with the mock: the contact closes again (the pin's level changes)
    # while delivery of that edge is held back, past the release debounce.
    button = make_button(debounce_s=0.03)
    presses: list[float] = []
    releases: list[float] = []
    button.when_pressed = lambda: presses.append(time.monotonic())
    button.when_released = releases.append
    pin = factory.pin(PIN)
    pin.drive_low()  # pressed
    pin.drive_high()  # bounce: open...
    pin._change_state(False)  # ...closed again, but the edge is not delivered yet
    time.sleep(0.15)  # well past debounce_s: a release would have been confirmed by now
    pin._call_when_changed()  # the late edge arrives
    time.sleep(0.05)
    assert len(presses) == 1 and releases == [], "late bounce made a release and a new press"
    pin.drive_high()  # the real release
    wait_for(lambda: len(releases) == 1, what="the real release")
    assert len(presses) == 1
