"""GPIO devices on the pole: call button, cabinet inputs, status lamp, relays with their
thermostat, and the pin backends.

The client that works a node's simulated pins from outside lives in `devkit.simulators.gpio`.
"""

from drivers.gpio.button import CallButton
from drivers.gpio.debounce import Debouncer
from drivers.gpio.factory import make_pin_factory
from drivers.gpio.inputs import DigitalInput
from drivers.gpio.led import StatusLed
from drivers.gpio.relay import Relay
from drivers.gpio.simulator import PinSimulator
from drivers.gpio.thermostat import Thermostat

__all__ = [
    "CallButton",
    "Debouncer",
    "DigitalInput",
    "PinSimulator",
    "Relay",
    "StatusLed",
    "Thermostat",
    "make_pin_factory",
]
