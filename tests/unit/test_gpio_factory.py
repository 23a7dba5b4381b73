"""Choosing the pin backend by name."""

from __future__ import annotations

import importlib.util

import pytest
from gpiozero.pins.mock import MockFactory, MockPin

from drivers.gpio import CallButton, StatusLed, make_pin_factory
from drivers.gpio.factory import FACTORY_NAMES


def test_no_name_leaves_the_choice_to_gpiozero() -> None:
    assert make_pin_factory(None) is None


def test_mock_gives_a_fresh_factory_of_pins_with_pull_resistors() -> None:
    first, second = make_pin_factory("mock"), make_pin_factory(" Mock ")
    assert isinstance(first, MockFactory) and isinstance(second, MockFactory)
    assert first is not second
    assert first.pin_class is MockPin
    first.pin(17).drive_low()
    assert second.pin(17).state is False and first.pin(17) is not second.pin(17)


def test_an_unknown_name_is_refused_listing_the_valid_ones() -> None:
    with pytest.raises(ValueError) as refused:
        make_pin_factory("gpiod")
    assert "'gpiod'" in str(refused.value)
    for name in ("lgpio", "rpigpio", "pigpio", "native", "mock"):
        assert name in str(refused.value)
    assert set(FACTORY_NAMES) == {"lgpio", "rpigpio", "pigpio", "native", "mock"}


@pytest.mark.skipif(
    importlib.util.find_spec("pigpio") is not None, reason="pigpio is installed here"
)
def test_a_backend_whose_library_is_missing_says_which() -> None:
    with pytest.raises(ImportError, match=r"'pigpio'.*not installed"):
        make_pin_factory("pigpio")


def test_one_mock_factory_is_the_whole_pole_shared_by_its_devices() -> None:
    pole = make_pin_factory("mock")
    assert pole is not None
    with CallButton(17, pin_factory=pole) as button, StatusLed(27, pin_factory=pole) as led:
        button.when_pressed = led.on
        pole.pin(17).drive_low()
        assert pole.pin(27).state is True
