"""What the call button's LED tells the citizen at the pole:

  pending call, link up, younger than ack_timeout_s  → fast blink ("calling")
  pending call, link down or older                    → double blink ("no link"; re-sending)
  call acknowledged within ack_display_s              → steady ("help is coming")
  otherwise                                           → off

Ages come in as durations on the monotonic clock, so a step of the wall clock cannot turn a
pending call's light off or hold an old ack's light on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from edge.config.model import TimingSection

NO_LINK_PATTERN = ((True, 0.15), (False, 0.15), (True, 0.15), (False, 0.9))


class Indicator(Protocol):
    """The call button's LED, as the alarm path needs it."""

    def off(self) -> None: ...
    def on(self) -> None: ...
    def blink(self, on_s: float, off_s: float) -> None: ...
    def pattern(self, steps: Sequence[tuple[bool, float]]) -> None: ...


def show_call_state(led: Indicator, timings: TimingSection, *, connected: bool,
                    oldest_call_s: float | None, last_ack_s: float | None) -> None:
    """Set the LED from how long the oldest open call has waited and how long ago the last
    call was acknowledged (None: there is none)."""
    if oldest_call_s is not None:
        if connected and oldest_call_s < timings.ack_timeout_s:
            led.blink(0.25, 0.25)
        else:
            led.pattern(NO_LINK_PATTERN)
    elif last_ack_s is not None and last_ack_s < timings.ack_display_s:
        led.on()
    else:
        led.off()
