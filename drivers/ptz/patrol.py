"""The PTZ head's patrol: a tour of presets visited in turn, interrupted when an alert needs
the camera somewhere.

Between alerts the head walks its tour (preset, dwell) forever, so the camera sweeps the
square, the crossing and the bus stop in turn. An alert asks for one preset (the call
button's, a tamper switch's): the head goes there at once and stays; when the pause runs out
the tour resumes at the stop it was interrupted at. A serial fault never ends the patrol: it
is counted, and the command is retried with a growing wait until the line is back.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from drivers.backoff import Backoff
from drivers.lifecycle import Lifecycle
from drivers.ptz.pelco_d import MAX_PRESET, MIN_PRESET

logger = logging.getLogger(__name__)


class PresetHead(Protocol):
    """What a patrol needs of a head: `PtzHead` is one."""

    def goto(self, preset: int) -> None: ...


@dataclass(frozen=True)
class PatrolState:
    """The patrol for telemetry; times are in the patrol's clock (monotonic seconds)."""

    current_preset: int | None
    tour_index: int
    paused_until: float | None
    alert_preset: int | None
    tours_completed: int
    errors: int
    last_error: str | None
    running: bool
    failing: bool = False  # the latest command to the head failed; it is being retried


class Patrol(Lifecycle):
    """Runs `tour`, a list of (preset, dwell_s), on `head` in its own thread from creation.

    An empty tour is a head without a patrol: it stays where it is until an alert moves it,
    and stays there after the pause. All the head's commands are sent from this thread, so a
    slow or unplugged serial line never holds up the caller of `pause_for`.

    `clock` is what dwell times and pauses are measured on; waits are condition waits that
    `pause_for` and `stop` cut short, so nothing waits out a dwell to react.
    """

    def __init__(
        self,
        head: PresetHead,
        tour: Sequence[tuple[int, float]],
        *,
        clock: Callable[[], float] = time.monotonic,
        retry_min_s: float = 0.5,
        retry_max_s: float = 30.0,
    ) -> None:
        for preset, dwell_s in tour:
            _check_preset(preset)
            if not math.isfinite(dwell_s) or dwell_s <= 0:
                raise ValueError(f"dwell for preset {preset} must be > 0 s, got {dwell_s!r}")
        super().__init__()
        self._head = head
        self._tour = list(tour)
        self._clock = clock
        self._backoff = Backoff(retry_min_s, retry_max_s)
        self._cond = threading.Condition()
        self._index = 0
        self._current: int | None = None
        self._alert_preset: int | None = None
        self._alert_pending = False
        self._paused_until: float | None = None
        self._tours_completed = 0
        self._errors = 0
        self._last_error: str | None = None
        self._failing = False
        self._thread = self._start_thread(self._run, "ptz-patrol")

    @property
    def state(self) -> PatrolState:
        with self._cond:
            return PatrolState(
                current_preset=self._current,
                tour_index=self._index,
                paused_until=self._paused_until,
                alert_preset=self._alert_preset,
                tours_completed=self._tours_completed,
                errors=self._errors,
                last_error=self._last_error,
                running=self._thread.is_alive() and not self.closed,
                failing=self._failing,
            )

    def pause_for(self, preset: int, resume_after_s: float) -> None:
        """Go to `preset` now and hold there for `resume_after_s`, then resume the tour.

        A call during a pause extends it (it never shortens one) and, for another preset,
        moves the head there.
        """
        _check_preset(preset)
        if not math.isfinite(resume_after_s) or resume_after_s < 0:
            raise ValueError(f"resume_after_s must be >= 0, got {resume_after_s!r}")
        with self._cond:
            until = self._clock() + resume_after_s
            if self._paused_until is None or until > self._paused_until:
                self._paused_until = until
            if preset != self._alert_preset or self._current != preset:
                self._alert_pending = True
            self._alert_preset = preset
            self._cond.notify_all()

    def stop(self) -> None:
        """End the patrol (the head stays where it is); idempotent. The same as `close()`."""
        self.close()

    def _interrupt(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                step = self._next_step()
            if step is None:
                return
            target, for_alert = step
            if not self._goto(target):
                continue
            with self._cond:
                self._current = target
                if for_alert:
                    # Another alert may have asked for a different preset meanwhile.
                    if self._alert_preset == target:
                        self._alert_pending = False
                    continue
                self._wait_until(self._clock() + self._tour[self._index][1])
                # An alert cut the dwell short: this stop is visited again after the pause.
                if self.closed or self._paused_until is not None:
                    continue
                self._index += 1
                if self._index == len(self._tour):
                    self._index = 0
                    self._tours_completed += 1

    def _next_step(self) -> tuple[int, bool] | None:
        """(preset, for an alert) to go to next, waiting out a pause; None once stopping.

        Called with the lock held."""
        while not self.closed:
            if self._alert_pending and self._alert_preset is not None:
                return self._alert_preset, True
            if self._paused_until is not None:
                now = self._clock()
                if now < self._paused_until:
                    self._cond.wait(self._paused_until - now)
                    continue
                logger.info("patrol: pause at preset %s over, tour resumes", self._alert_preset)
                self._paused_until = self._alert_preset = None
            if not self._tour:
                self._cond.wait()
                continue
            return self._tour[self._index][0], False
        return None

    def _wait_until(self, deadline: float) -> None:
        while not self.closed and not self._alert_pending:
            remaining = deadline - self._clock()
            if remaining <= 0:
                return
            self._cond.wait(remaining)

    def _goto(self, preset: int) -> bool:
        try:
            self._head.goto(preset)
        except Exception as exc:
            # Any failure (adapter unplugged, a driver bug) is retried: the patrol never dies.
            delay = self._backoff.next()
            logger.warning("patrol: go to preset %d failed (%s); retrying in %.1f s",
                           preset, exc, delay)
            with self._cond:
                self._errors += 1
                self._last_error = str(exc)
                self._failing = True
                if not self.closed:
                    self._cond.wait(delay)
            return False
        self._backoff.reset()
        with self._cond:
            self._failing = False
        return True


def _check_preset(preset: int) -> None:
    if not MIN_PRESET <= preset <= MAX_PRESET:
        raise ValueError(f"preset must be {MIN_PRESET}-{MAX_PRESET}, got {preset!r}")
