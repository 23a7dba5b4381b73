"""A switch contact on one GPIO input, debounced in software and watched by a small thread.

`Contact` is the shared engine under `CallButton` and `DigitalInput`: gpiozero reports raw
edges, a `Debouncer` turns them into events, and a daemon thread sleeps until the debouncer's
next deadline (release confirmation, long press, stuck) so time-driven events fire without an
edge and without busy polling.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from gpiozero import DigitalInputDevice
from gpiozero.pins import Factory

from drivers.gpio.debounce import Debouncer, Event, EventKind
from drivers.lifecycle import Lifecycle

logger = logging.getLogger(__name__)


class Contact(Lifecycle):
    """A debounced contact that hands each event to `on_event`.

    Edge events (a press) are delivered synchronously in the thread that reported the edge: on
    a Pi that is the GPIO library's callback thread, with MockFactory pins the thread that drove
    the pin. Time-driven events come from the contact's own thread. `on_event` always runs
    outside the lock; an exception in it is logged with the pin and swallowed.
    """

    def __init__(
        self,
        pin: int | str,
        *,
        label: str,
        on_event: Callable[[Event], None],
        pull_up: bool | None,
        active_high: bool | None,
        debounce_s: float,
        long_press_s: float | None = None,
        stuck_after_s: float | None = None,
        pin_factory: Factory | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._label = label
        self._on_event = on_event
        self._clock = clock
        self._cond = threading.Condition()
        self._counts: Counter[EventKind] = Counter()
        self._device, self._inverted = _open_device(pin, pull_up, active_high, pin_factory)
        try:
            self._pin_name = str(self._device.pin)
            self._debouncer = Debouncer(
                debounce_s=debounce_s,
                long_press_s=long_press_s,
                stuck_after_s=stuck_after_s,
                initial_active=self._level(),
                t0=clock(),
            )
            self._device.when_activated = self._on_device_activated
            self._device.when_deactivated = self._on_device_deactivated
        except BaseException:
            self._device.close()
            raise
        self._start_thread(self._watch, label)
        # An edge between reading the initial level and wiring the callbacks would be lost.
        self._edge(self._level())

    @property
    def pin_name(self) -> str:
        """The pin as the pin factory names it, e.g. "GPIO17"."""
        return self._pin_name

    @property
    def is_active(self) -> bool:
        """The debounced level."""
        with self._cond:
            return self._debouncer.is_active

    def count(self, kind: EventKind) -> int:
        """How many events of `kind` this contact has produced since it was opened."""
        with self._cond:
            return self._counts[kind]

    def _interrupt(self) -> None:
        # close(): stop watching the pin and release it, so no edge comes in while it ends.
        with self._cond:
            self._cond.notify_all()
        self._device.close()

    def _level(self) -> bool:
        return bool(self._device.is_active) != self._inverted

    def _on_device_activated(self) -> None:
        self._edge(not self._inverted)

    def _on_device_deactivated(self) -> None:
        self._edge(self._inverted)

    def _edge(self, active: bool) -> None:
        with self._cond:
            if self.closed:
                return
            # The clock is read under the lock so the debouncer sees times in order.
            events = self._debouncer.feed(active, self._clock())
            self._counts.update(e.kind for e in events)
            self._cond.notify()
        self._deliver(events)

    def _watch(self) -> None:
        while True:
            with self._cond:
                events = self._wait_for_due_events()
            if events is None:
                return
            self._deliver(events)

    def _wait_for_due_events(self) -> list[Event] | None:
        while not self.closed:
            deadline = self._debouncer.next_deadline()
            if deadline is None:
                self._cond.wait()
                continue
            now = self._clock()
            if deadline > now:
                self._cond.wait(deadline - now)
                continue
            if self._debouncer.release_pending and self._level():
                # The contact is closed right now though its closing edge has not reached us
                # (the GPIO library's callbacks lag when the process is starved): that was
                # bounce, not a release; confirming it would make the late edge a new press.
                events = self._debouncer.seen_closed(now)
            else:
                events = self._debouncer.poll(now)
            self._counts.update(e.kind for e in events)
            if events:
                return events
        return None

    def _deliver(self, events: list[Event]) -> None:
        for event in events:
            try:
                self._on_event(event)
            except Exception:
                logger.exception(
                    "%s on %s: handler for %s raised", self._label, self._pin_name, event.kind.value
                )


def _open_device(
    pin: int | str,
    pull_up: bool | None,
    active_high: bool | None,
    pin_factory: Factory | None,
) -> tuple[Any, bool]:
    """Open the gpiozero input; returns it and whether its notion of "active" must be inverted.

    gpiozero ties the active level to the pull (pulled up means active low) and refuses an
    explicit active state with a pull, so a normally-closed contact is handled by inverting.
    """
    if pull_up is None:
        if active_high is None:
            raise ValueError(
                f"pin {pin}: without an internal pull (pull_up=None) the active level is "
                "unknown; pass active_high=True or False"
            )
        device = DigitalInputDevice(
            pin,
            pull_up=None,
            active_state=active_high,
            bounce_time=None,
            pin_factory=pin_factory,
        )
        return device, False
    device = DigitalInputDevice(pin, pull_up=pull_up, bounce_time=None, pin_factory=pin_factory)
    natural_active_high = not pull_up
    return device, active_high is not None and active_high != natural_active_high
