"""Two-state inputs in the pole's cabinet: tamper switch, door contact, mains-present relay."""

from __future__ import annotations

import time
from collections.abc import Callable

from gpiozero.pins import Factory

from drivers.gpio.contact import Contact
from drivers.gpio.debounce import Event, EventKind


class DigitalInput:
    """A named on/off input whose changes are debounced and reported.

    "Active" means the condition the input reports is present: the cabinet door is open, the
    tamper switch is tripped. By default the contact closes to ground against the internal
    pull-up, so closed is active. For a normally-closed contact on a pull-up pass
    `active_high=True`; for a pin with an external resistor pass `pull_up=None` and say which
    level is active with `active_high`. The level at start-up is not reported as a change; read
    `is_active` to learn it. Callbacks may run in the thread that saw the edge or in the input's
    own thread; exceptions in them are logged.
    """

    def __init__(
        self,
        name: str,
        pin: int | str,
        *,
        pull_up: bool | None = True,
        active_high: bool | None = None,
        debounce_s: float = 0.05,
        pin_factory: Factory | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.when_activated: Callable[[], None] | None = None
        self.when_deactivated: Callable[[], None] | None = None
        self._contact = Contact(
            pin,
            label=f"input-{name}",
            on_event=self._dispatch,
            pull_up=pull_up,
            active_high=active_high,
            debounce_s=debounce_s,
            pin_factory=pin_factory,
            clock=clock,
        )

    @property
    def is_active(self) -> bool:
        """The debounced state: True while the reported condition is present."""
        return self._contact.is_active

    @property
    def changes(self) -> int:
        """Debounced changes (activations plus deactivations) since start-up."""
        return self._contact.count(EventKind.PRESSED) + self._contact.count(EventKind.RELEASED)

    @property
    def pin_name(self) -> str:
        """The pin as the pin factory names it, e.g. "GPIO22"."""
        return self._contact.pin_name

    def close(self) -> None:
        """Stop watching the input and release its pin; safe to call more than once."""
        self._contact.close()

    def __enter__(self) -> DigitalInput:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "active" if self.is_active else "inactive"
        return f"<DigitalInput {self.name!r} on {self.pin_name} {state}>"

    def _dispatch(self, event: Event) -> None:
        if event.kind is EventKind.PRESSED:
            callback = self.when_activated
        elif event.kind is EventKind.RELEASED:
            callback = self.when_deactivated
        else:
            return
        if callback is not None:
            callback()
