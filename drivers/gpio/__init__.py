"""GPIO devices on the pole: call button, cabinet inputs, status lamp, and their pin backends."""

from drivers.gpio.button import CallButton
from drivers.gpio.debounce import Debouncer
from drivers.gpio.factory import make_pin_factory
from drivers.gpio.inputs import DigitalInput
from drivers.gpio.led import StatusLed
from drivers.gpio.simulator import PinSimulator, PinSimulatorClient

__all__ = [
    "CallButton",
    "Debouncer",
    "DigitalInput",
    "PinSimulator",
    "PinSimulatorClient",
    "StatusLed",
    "make_pin_factory",
]
