"""The PTZ head on the pole and its patrol: the head walks its tour of presets; an alert
turns it to the preset for that source (a call: the citizen at the button) and the tour
resumes `resume_after_s` later.

A head that stops answering (a pulled RS-485 adapter) is a problem a crew is told about while
the patrol keeps retrying; a patrol thread that died stops the watchdog being fed.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

from contract.pole import PtzStats
from edge import clock
from edge.config.pole import PtzSection

if TYPE_CHECKING:  # the serial driver loads only for a pole whose config has a head
    from drivers.ptz import Patrol, PtzHead

log = logging.getLogger(__name__)


class Ptz:
    """The head on its RS-485 port and the patrol thread that drives it."""

    def __init__(self, section: PtzSection) -> None:
        from drivers.ptz import Patrol, PtzHead

        self._section = section
        self.head: PtzHead = PtzHead(section.port, section.address, section.baudrate,
                                     open_now=False)
        try:
            self.patrol: Patrol = Patrol(self.head,
                                         [(s.preset, s.dwell_s) for s in section.tour])
        except BaseException:
            self.head.close()
            raise

    def on_alert(self, source: str) -> None:
        """Turn the head to `source`'s preset, if it has one; the tour waits."""
        p = self._section
        if source in p.alert_presets:
            preset = p.alert_presets[source]
            self.patrol.pause_for(preset, p.resume_after_s)
            log.info("PTZ head to preset %d for %s, tour resumes in %.0f s", preset, source,
                     p.resume_after_s)

    def stats(self) -> PtzStats:
        s = self.patrol.state
        mode: Literal["patrol", "alert", "idle"] = "idle"
        resume = None
        if s.paused_until is not None:
            mode, resume = "alert", max(0.0, s.paused_until - clock.monotonic())
        elif self._section.tour:
            mode = "patrol"
        return PtzStats(mode=mode, preset=s.current_preset, alert_preset=s.alert_preset,
                        resume_in_s=round(resume, 1) if resume is not None else None,
                        tours_completed=s.tours_completed, frames_sent=self.head.frames_sent,
                        errors=s.errors, last_error=s.last_error)

    def problems(self) -> list[str]:
        if self.patrol.state.failing:
            return [f"PTZ head {self.head.address} not answering on {self.head.port}"]
        return []

    def dead(self) -> str:
        return "PTZ patrol thread died" if not self.patrol.state.running else ""

    def close(self) -> None:
        self.patrol.stop()
        self.head.close()
