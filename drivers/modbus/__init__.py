"""The pole's RS-485 sensor bus: Modbus RTU slaves (cabinet climate, UPS) by register map.

The simulated bus for tests and the demo lives in `devkit.simulators.modbus`.
"""

from drivers.modbus.rtu import Reading, Register, SensorBus

__all__ = ["Reading", "Register", "SensorBus"]
