"""Two-state inputs in the pole's cabinet: tamper switch, door contact, mains-present relay.

`DigitalInput` reports debounced changes; an optional `FlapLimit` stops a flapping input (a
loose wire, a failing UPS relay) from flooding the hub: past a number of changes in a window
the input reports "flapping" once, goes quiet, and reports its settled state after a quiet
window.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from enum import Enum
from typing import Any

from gpiozero.pins import Factory

from drivers.gpio.contact import Contact
from drivers.gpio.debounce import Event, EventKind
from drivers.lifecycle import Lifecycle

logger = logging.getLogger(__name__)


class FlapVerdict(Enum):
    """What to do with one debounced change of a rate-limited input."""

    REPORT = "report"
    START = "start"  # this change is one too many: flapping starts, the change is not reported
    SUPPRESS = "suppress"  # flapping already: not reported


class FlapLimit:
    """The flapping state of one input, as a pure state machine fed with change times.

    More than `max_changes` changes within `window_s` start flapping; flapping ends once no
    change has come for `window_s`. A change exactly `window_s` after another is outside its
    window. Not thread-safe; times come from one monotonic clock.
    """

    def __init__(self, *, max_changes: int, window_s: float) -> None:
        if isinstance(max_changes, bool) or not isinstance(max_changes, int) or max_changes < 1:
            raise ValueError(f"flap_max_changes must be a whole number >= 1, got {max_changes!r}")
        if not math.isfinite(window_s) or window_s <= 0:
            raise ValueError(f"flap_window_s must be finite seconds > 0, got {window_s!r}")
        self._max_changes = max_changes
        self._window_s = window_s
        self._recent: deque[float] = deque()
        self._last_change: float | None = None
        self.flapping = False
        self.suppressed = 0
        self.episodes = 0

    def change(self, t: float) -> FlapVerdict:
        """Take one debounced change at time `t`."""
        self._last_change = t
        if self.flapping:
            self.suppressed += 1
            return FlapVerdict.SUPPRESS
        self._recent.append(t)
        while self._recent[0] <= t - self._window_s:
            self._recent.popleft()
        if len(self._recent) <= self._max_changes:
            return FlapVerdict.REPORT
        self.flapping = True
        self.episodes += 1
        self.suppressed += 1
        self._recent.clear()
        return FlapVerdict.START

    def quiet_deadline(self) -> float | None:
        """When flapping ends if no change comes before; None while not flapping."""
        if not self.flapping or self._last_change is None:
            return None
        return self._last_change + self._window_s

    def settle(self, t: float) -> bool:
        """End flapping if it has been quiet for the window by time `t`; True if it ended now."""
        deadline = self.quiet_deadline()
        if deadline is None or t < deadline:
            return False
        self.flapping = False
        return True


class DigitalInput(Lifecycle):
    """A named on/off input whose changes are debounced and reported.

    "Active" means the condition the input reports is present: the cabinet door is open, the
    tamper switch is tripped. By default the contact closes to ground against the internal
    pull-up, so closed is active. For a normally-closed contact on a pull-up pass
    `active_high=True`; for a pin with an external resistor pass `pull_up=None` and say which
    level is active with `active_high`. The level at start-up is not reported as a change; read
    `is_active` to learn it. Callbacks may run in the thread that saw the edge or in the input's
    own threads; exceptions in them are logged.

    With `flap_max_changes`, an input that changes more than that many times within
    `flap_window_s` is flapping: `when_flapping(True)` is called once, and changes from the one
    too many on are not reported. Once it has not changed for `flap_window_s`,
    `when_flapping(False)` is called and, if the input settled in another state than last
    reported, the matching `when_activated` or `when_deactivated` once, so a listener ends up
    knowing the true state. A small thread notices the quiet, so no further edge is needed.
    """

    def __init__(
        self,
        name: str,
        pin: int | str,
        *,
        pull_up: bool | None = True,
        active_high: bool | None = None,
        debounce_s: float = 0.05,
        flap_max_changes: int | None = None,
        flap_window_s: float = 60.0,
        pin_factory: Factory | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.name = name
        self.when_activated: Callable[[], None] | None = None
        self.when_deactivated: Callable[[], None] | None = None
        self.when_flapping: Callable[[bool], None] | None = None
        self._clock = clock
        self._cond = threading.Condition()
        self._flap: FlapLimit | None = None
        if flap_max_changes is not None:
            try:
                self._flap = FlapLimit(max_changes=flap_max_changes, window_s=flap_window_s)
            except ValueError as e:
                raise ValueError(f"input {name!r}: {e}") from None
        # The state a listener was last told; None until the contact's start level is known.
        self._reported_active: bool | None = None
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
        if self._flap is not None:
            with self._cond:
                if self._reported_active is None:
                    self._reported_active = self._contact.is_active
            self._start_thread(self._watch_quiet, f"input-{name}-flap")

    @property
    def is_active(self) -> bool:
        """The debounced state: True while the reported condition is present."""
        return self._contact.is_active

    @property
    def changes(self) -> int:
        """Debounced changes (activations plus deactivations) since start-up, reported or not."""
        return self._contact.count(EventKind.PRESSED) + self._contact.count(EventKind.RELEASED)

    @property
    def flapping(self) -> bool:
        """True while the input is flapping and its changes are not reported."""
        with self._cond:
            return self._flap is not None and self._flap.flapping

    @property
    def suppressed(self) -> int:
        """Changes not reported because the input was flapping, since start-up."""
        with self._cond:
            return 0 if self._flap is None else self._flap.suppressed

    @property
    def flap_episodes(self) -> int:
        """How many times the input has started flapping since start-up."""
        with self._cond:
            return 0 if self._flap is None else self._flap.episodes

    @property
    def pin_name(self) -> str:
        """The pin as the pin factory names it, e.g. "GPIO22"."""
        return self._contact.pin_name

    def _interrupt(self) -> None:
        # close(): stop watching the input and release its pin, then end the quiet watch.
        self._contact.close()
        with self._cond:
            self._cond.notify_all()

    def __repr__(self) -> str:
        state = "active" if self.is_active else "inactive"
        if self.flapping:
            state += ", flapping"
        return f"<DigitalInput {self.name!r} on {self.pin_name} {state}>"

    def _dispatch(self, event: Event) -> None:
        if event.kind not in (EventKind.PRESSED, EventKind.RELEASED):
            return
        active = event.kind is EventKind.PRESSED
        if self._flap is None:
            self._report(active)
            return
        with self._cond:
            now = self._clock()
            # Quiet for a whole window before this change, though the quiet watch has not run
            # yet: flapping ended before it, in the state this change leaves.
            ended = self._settle(self._flap, now, settled=not active)
            verdict = self._flap.change(now)
            # The quiet watch may have reported this very state already, when the change
            # landed just as flapping ended; telling the listener twice would be wrong.
            report = verdict is FlapVerdict.REPORT and active != self._reported_active
            if report:
                self._reported_active = active
            self._cond.notify()
        if ended is not None:
            self._announce_quiet(*ended)
        if verdict is FlapVerdict.START:
            logger.warning(
                "input %s on %s: flapping, changes not reported", self.name, self.pin_name
            )
            self._call("when_flapping", self.when_flapping, True)
        elif report:
            self._report(active)

    def _report(self, active: bool) -> None:
        if active:
            self._call("when_activated", self.when_activated)
        else:
            self._call("when_deactivated", self.when_deactivated)

    def _watch_quiet(self) -> None:
        if self._flap is None:  # started only for an input with flap detection
            raise RuntimeError("flap watcher started without flap detection")
        while True:
            with self._cond:
                ended = self._wait_for_quiet(self._flap)
            if ended is None:
                return
            self._announce_quiet(*ended)

    def _wait_for_quiet(self, flap: FlapLimit) -> tuple[bool, bool] | None:
        """Under the lock: wait until flapping ends (see `_settle`); None once closed."""
        while not self.closed:
            deadline = flap.quiet_deadline()
            if deadline is None:
                self._cond.wait()
                continue
            now = self._clock()
            if deadline > now:
                self._cond.wait(deadline - now)
                continue
            ended = self._settle(flap, now, settled=self._contact.is_active)
            if ended is not None:
                return ended
        return None

    def _settle(self, flap: FlapLimit, now: float, *, settled: bool) -> tuple[bool, bool] | None:
        """Under the lock: end flapping if quiet long enough; (settled state, whether the
        listener must be told it), or None if still flapping or not flapping at all."""
        if not flap.settle(now):
            return None
        tell = settled != self._reported_active
        self._reported_active = settled
        return settled, tell

    def _announce_quiet(self, settled: bool, tell: bool) -> None:
        logger.info(
            "input %s on %s: flapping over, %s",
            self.name,
            self.pin_name,
            "active" if settled else "inactive",
        )
        self._call("when_flapping", self.when_flapping, False)
        if tell:
            self._report(settled)

    def _call(self, what: str, callback: Callable[..., None] | None, *args: Any) -> None:
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            logger.exception("input %s on %s: %s raised", self.name, self.pin_name, what)
