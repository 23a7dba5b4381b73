"""The pole's serial devices for the demo, each simulated at the far end of a pty: the PTZ
head (Pelco-D), the GPS receiver (NMEA) and the RS-485 sensor bus (Modbus RTU: the cabinet's
climate sensor and the UPS).

SerialDevices starts one for each port the demo config writes as a placeholder
(`ptz-simulator`, `gps-simulator`, `modbus-simulator`) and puts its pty there instead. The
head gets its presets stored first, each a little further along the street, as an installer
would set them with a joystick before the node takes the head over. close() stops them all,
after the node.
"""

from __future__ import annotations

import time
from typing import Any

from devkit.demo.pole import DemoError
from devkit.simulators.gps import GpsSimulator
from devkit.simulators.modbus import SensorBusSimulator
from devkit.simulators.ptz import SimulatedHead
from drivers.ptz.pelco_d import MAX_SPEED, PtzError, PtzHead

PTZ_PLACEHOLDER, GPS_PLACEHOLDER, MODBUS_PLACEHOLDER = (
    "ptz-simulator", "gps-simulator", "modbus-simulator")
PRESET_PAN_S = 0.1  # panned at full speed between two presets: some 6° apart
PRESETS_TIMEOUT_S = 3.0  # every preset frame read by the simulated head


class SerialDevices:
    """The simulated head, GPS receiver and sensor bus of one demo run (None: not asked for)."""

    def __init__(self) -> None:
        self.head: SimulatedHead | None = None
        self.gps: GpsSimulator | None = None
        self.bus: SensorBusSimulator | None = None

    def start(self, config: dict[str, Any]) -> None:
        """Start a simulator for each placeholder port in `config` (the node's config as read
        from YAML) and write its pty there."""
        ptz, gps, modbus = (config.get(k) or {} for k in ("ptz", "gps", "modbus"))
        if ptz.get("port") == PTZ_PLACEHOLDER:
            address = ptz.get("address", 1)
            self.head = SimulatedHead(address)
            ptz["port"] = self.head.path
            presets = {stop["preset"] for stop in ptz.get("tour", [])}
            presets |= set(ptz.get("alert_presets", {}).values())
            store_presets(self.head, address, sorted(presets))
        if gps.get("port") == GPS_PLACEHOLDER:
            where = config.get("node", {}).get("location") or {}
            self.gps = (GpsSimulator(where["lat"], where["lon"]) if "lat" in where
                        else GpsSimulator())
            gps["port"] = self.gps.path
        if modbus.get("port") == MODBUS_PLACEHOLDER:
            try:
                self.bus = SensorBusSimulator()
            except RuntimeError as e:
                raise DemoError(f"cannot start the simulated Modbus sensor bus: {e}") from e
            modbus["port"] = self.bus.path

    def describe(self) -> str:
        """One line for the narration: which devices run on which pty."""
        parts = []
        if self.head is not None:
            presets = ", ".join(map(str, sorted(self.head.state().presets)))
            parts.append(f"PTZ head (Pelco-D, presets {presets}) on {self.head.path}")
        if self.gps is not None:
            parts.append(f"GPS receiver (NMEA) on {self.gps.path}")
        if self.bus is not None:
            parts.append(f"Modbus climate sensor and UPS on {self.bus.path}")
        return "; ".join(parts)

    def close(self) -> None:
        """Stop every simulator; safe to call again."""
        for device in (self.head, self.gps, self.bus):
            if device is not None:
                device.close()
        self.head = self.gps = self.bus = None


def store_presets(head: SimulatedHead, address: int, presets: list[int]) -> None:
    """Pan a little, store a preset, and again for the next, over the head's own line."""
    try:
        with PtzHead(head.path, address) as joystick:
            for n in presets:
                joystick.move(pan=MAX_SPEED)
                time.sleep(PRESET_PAN_S)
                joystick.stop()
                joystick.set_preset(n)
    except PtzError as e:
        raise DemoError(f"cannot store the simulated PTZ head's presets: {e}") from e
    deadline = time.monotonic() + PRESETS_TIMEOUT_S
    while set(presets) - set(head.state().presets):
        if time.monotonic() > deadline:
            missing = sorted(set(presets) - set(head.state().presets))
            raise DemoError(f"the simulated PTZ head did not store presets {missing}")
        time.sleep(0.02)
