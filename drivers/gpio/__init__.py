"""GPIO devices on the pole: call button, cabinet inputs, status lamp, relays with their
thermostat, and the pin backends."""

from drivers.gpio.button import CallButton
from drivers.gpio.debounce import Debouncer
from drivers.gpio.factory import make_pin_factory
from drivers.gpio.inputs import DigitalInput
from drivers.gpio.led import StatusLed
from drivers.gpio.relay import Relay
from drivers.gpio.simulator import PinSimulator, PinSimulatorClient
from drivers.gpio.thermostat import Thermostat

__all__ = [
    "CallButton",
    "Debouncer",
    "DigitalInput",
    "PinSimulator",
    "PinSimulatorClient",
    "Relay",
    "StatusLed",
    "Thermostat",
    "make_pin_factory",
]
