"""The pole's emergency call button."""

from __future__ import annotations

import time
from collections.abc import Callable

from gpiozero.pins import Factory

from drivers.gpio.contact import Contact
from drivers.gpio.debounce import Event, EventKind
from drivers.lifecycle import Lifecycle


class CallButton(Lifecycle):
    """The call button a person in distress presses on the pole.

    A press is reported on its first closing edge, with no confirmation delay, because the
    alert's latency budget is spent elsewhere; contact chatter on press and release never adds
    a press. Holding the button for `long_press_s` reports a long press; a button held for
    `stuck_after_s` (jammed, taped down, a shorted cable) reports stuck, once, and its eventual
    release is reported as a normal release. A button already held at start-up is not a call,
    but is still reported stuck if it stays held.

    Wired between the pin and ground with the internal pull-up by default; pass
    `pull_up=False` for a button that pulls the pin high. `pin_factory` selects the backend
    (see `make_pin_factory`). `when_pressed` runs in the thread that saw the edge; the other
    callbacks may run in the button's own thread. Exceptions in callbacks are logged.
    """

    def __init__(
        self,
        pin: int | str,
        *,
        pull_up: bool = True,
        debounce_s: float = 0.03,
        long_press_s: float | None = 3.0,
        stuck_after_s: float | None = 60.0,
        pin_factory: Factory | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.when_pressed: Callable[[], None] | None = None
        self.when_released: Callable[[float], None] | None = None
        self.when_long_pressed: Callable[[], None] | None = None
        self.when_stuck: Callable[[], None] | None = None
        self._contact = Contact(
            pin,
            label="call-button",
            on_event=self._dispatch,
            pull_up=pull_up,
            active_high=None,
            debounce_s=debounce_s,
            long_press_s=long_press_s,
            stuck_after_s=stuck_after_s,
            pin_factory=pin_factory,
            clock=clock,
        )

    @property
    def is_pressed(self) -> bool:
        """True while the button is held (debounced)."""
        return self._contact.is_active

    @property
    def presses(self) -> int:
        """Presses reported since start-up."""
        return self._contact.count(EventKind.PRESSED)

    @property
    def pin_name(self) -> str:
        """The pin as the pin factory names it, e.g. "GPIO17"."""
        return self._contact.pin_name

    def _release(self) -> None:
        # close(): stop watching the button and release its pin.
        self._contact.close()

    def __repr__(self) -> str:
        state = "pressed" if self.is_pressed else "released"
        return f"<CallButton {self.pin_name} {state}, {self.presses} presses>"

    def _dispatch(self, event: Event) -> None:
        if event.kind is EventKind.PRESSED:
            on_press = self.when_pressed
            if on_press is not None:
                on_press()
        elif event.kind is EventKind.RELEASED:
            on_release = self.when_released
            if on_release is not None:
                on_release(event.duration_s or 0.0)
        elif event.kind is EventKind.LONG_PRESS:
            on_long = self.when_long_pressed
            if on_long is not None:
                on_long()
        else:
            on_stuck = self.when_stuck
            if on_stuck is not None:
                on_stuck()
