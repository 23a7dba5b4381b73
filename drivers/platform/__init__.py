"""Platform adapters: the controller's own health (SoC temperature, power, disk, wear,
clock sync) and the service manager's watchdog (`drivers.platform.watchdog`)."""

from drivers.platform.readers import Disk, Platform, PlatformReader, Throttle, Wear
from drivers.platform.timesync import ClockSync, adjtimex

__all__ = ["ClockSync", "Disk", "Platform", "PlatformReader", "Throttle", "Wear", "adjtimex"]
