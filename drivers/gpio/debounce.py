"""Contact debouncing for the pole's switches, as a pure state machine with no clock of its own.

A mechanical contact does not switch once: it chatters for a few milliseconds on press and on
release. `Debouncer` turns that chatter into clean events using "leading edge with lockout":
the first active edge is a press at once (the call button's latency budget leaves no room for a
confirmation delay), and a release counts only once the contact has stayed open for the
debounce time. The caller supplies every timestamp, so the behaviour is fully testable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum


class EventKind(Enum):
    """What happened to a debounced contact."""

    PRESSED = "pressed"
    RELEASED = "released"
    LONG_PRESS = "long_press"
    STUCK = "stuck"


@dataclass(frozen=True)
class Event:
    """One debounced event; `t` is when it happened (monotonic seconds), not when it was seen.

    For RELEASED, `t` is when the contact opened for good and `duration_s` how long it had been
    held; for LONG_PRESS and STUCK, `t` is when the hold crossed the threshold.
    """

    kind: EventKind
    t: float
    duration_s: float | None = None


class Debouncer:
    """Debounced state of one contact, fed with raw edges and polled for time-driven events.

    Not thread-safe: the owner serialises `feed` and `poll`. Times must come from one monotonic
    clock; a time earlier than the latest one seen is taken as the latest one.
    """

    def __init__(
        self,
        *,
        debounce_s: float,
        long_press_s: float | None = None,
        stuck_after_s: float | None = None,
        initial_active: bool = False,
        t0: float = 0.0,
    ) -> None:
        _check_duration("debounce_s", debounce_s, allow_zero=True)
        if long_press_s is not None:
            _check_duration("long_press_s", long_press_s, allow_zero=False)
        if stuck_after_s is not None:
            _check_duration("stuck_after_s", stuck_after_s, allow_zero=False)
        self._debounce_s = debounce_s
        self._long_press_s = long_press_s
        self._stuck_after_s = stuck_after_s
        self._now = t0
        self._raw = initial_active
        self._pressed = initial_active
        self._pressed_at = t0
        self._open_since: float | None = None
        # A contact already closed at start was never reported pressed, so it cannot be "long".
        self._long_sent = initial_active
        self._stuck_sent = False

    @property
    def is_active(self) -> bool:
        """The debounced level: True from the first closing edge until a confirmed release."""
        return self._pressed

    @property
    def raw_active(self) -> bool:
        """The last raw level fed in, bounce included."""
        return self._raw

    def feed(self, active: bool, t: float) -> list[Event]:
        """Take a raw edge at time `t`; returns the events it (and the time passed) caused."""
        events = self.poll(t)
        if active == self._raw:
            return events
        self._raw = active
        if not self._pressed:
            # Released implies the raw level was open, so this is a closing edge: a new press.
            self._pressed = True
            self._pressed_at = self._now
            self._open_since = None
            self._long_sent = False
            self._stuck_sent = False
            events.append(Event(EventKind.PRESSED, self._now))
        elif active:
            # Bounce (or a re-press) before the release was confirmed: the same press goes on.
            self._open_since = None
            # A threshold passed while the contact was open is due now that the hold goes on.
            events.extend(self.poll(self._now))
        else:
            self._open_since = self._now
        return events

    def poll(self, t: float) -> list[Event]:
        """Emit the events that have fallen due by time `t`, in the order they happened."""
        self._now = max(self._now, t)
        events: list[Event] = []
        while True:
            due = self._next_due()
            if due is None or due[0] > self._now:
                return events
            when, kind = due
            if kind is EventKind.RELEASED:
                if self._open_since is None:  # a release is only due after an opening
                    raise RuntimeError("debounce: release due without an opening")
                opened = self._open_since
                self._pressed = False
                self._open_since = None
                events.append(Event(kind, opened, opened - self._pressed_at))
            elif kind is EventKind.LONG_PRESS:
                self._long_sent = True
                events.append(Event(kind, when))
            else:
                self._stuck_sent = True
                events.append(Event(kind, when))

    @property
    def release_pending(self) -> bool:
        """Pressed, with the contact open and its release not yet confirmed."""
        return self._pressed and self._open_since is not None

    def seen_closed(self, t: float) -> list[Event]:
        """The contact was read closed at `t` though no closing edge came: bounce whose edge
        is still on its way. A pending release is cancelled, not confirmed."""
        self._now = max(self._now, t)
        if self.release_pending:
            self._raw = True
            self._open_since = None
        return self.poll(self._now)

    def next_deadline(self) -> float | None:
        """The earliest time at which `poll` could emit something; None if only an edge can."""
        due = self._next_due()
        return None if due is None else due[0]

    def _next_due(self) -> tuple[float, EventKind] | None:
        if not self._pressed:
            return None
        if self._open_since is not None:
            # An open contact pending confirmation decides the press first: if the release is
            # confirmed the hold ended before any later threshold; if it bounces back, the
            # thresholds are recomputed from the next edge.
            return (self._open_since + self._debounce_s, EventKind.RELEASED)
        candidates: list[tuple[float, EventKind]] = []
        if self._long_press_s is not None and not self._long_sent:
            candidates.append((self._pressed_at + self._long_press_s, EventKind.LONG_PRESS))
        if self._stuck_after_s is not None and not self._stuck_sent:
            candidates.append((self._pressed_at + self._stuck_after_s, EventKind.STUCK))
        return min(candidates, key=lambda c: c[0]) if candidates else None


def _check_duration(name: str, value: float, *, allow_zero: bool) -> None:
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number of seconds {bound}, got {value!r}")
