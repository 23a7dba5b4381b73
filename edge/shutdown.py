"""Stopping the node: its parts one after another, in the order given, each step logged if
it fails and the rest still run; a stop that hangs leaves every thread's stack in the
journal and exits, before systemd's TimeoutStopSec (15 s) would kill the node without a clue."""

from __future__ import annotations

import faulthandler
import logging
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)

LIMIT_S = 10.0


def stop_in_order(steps: Sequence[tuple[str, Callable[[], None]]],
                  limit_s: float = LIMIT_S) -> None:
    """Run each (name, stop) step; a failing one is logged and the next runs."""
    faulthandler.dump_traceback_later(limit_s, exit=True)
    try:
        for name, stop in steps:
            try:
                stop()
            except Exception:
                log.exception("stopping %s failed", name)
    finally:
        faulthandler.cancel_dump_traceback_later()
