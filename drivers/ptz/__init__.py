"""The pole's pan/tilt/zoom head: Pelco-D over RS-485 and its patrol tour.

The simulated head for tests and the demo lives in `devkit.simulators.ptz`.
"""

from drivers.ptz.patrol import Patrol, PatrolState
from drivers.ptz.pelco_d import Frame, FrameParser, PtzError, PtzHead

__all__ = ["Frame", "FrameParser", "Patrol", "PatrolState", "PtzError", "PtzHead"]
