"""The pole's GPS receiver: NMEA decoding and the reader thread that keeps the latest fix.

The simulated receiver for tests and the demo lives in `devkit.simulators.gps`.
"""

from drivers.gps.decoder import Fix, NmeaDecoder
from drivers.gps.nmea import GpsReader, GpsStats

__all__ = ["Fix", "GpsReader", "GpsStats", "NmeaDecoder"]
