"""Choosing the GPIO backend (gpiozero pin factory) once, at the edge of the program.

Devices never know which backend drives their pins: the node builds one factory here and
passes it as `pin_factory=` to every device, so one set of MockFactory pins can stand in for
the whole pole on a build machine.
"""

from __future__ import annotations

from importlib import import_module

from gpiozero.pins import Factory

# name -> (module, class); imported only when chosen since each needs its own C library.
_FACTORIES: dict[str, tuple[str, str]] = {
    "lgpio": ("gpiozero.pins.lgpio", "LGPIOFactory"),
    "rpigpio": ("gpiozero.pins.rpigpio", "RPiGPIOFactory"),
    "pigpio": ("gpiozero.pins.pigpio", "PiGPIOFactory"),
    "native": ("gpiozero.pins.native", "NativeFactory"),
    "mock": ("gpiozero.pins.mock", "MockFactory"),
}

FACTORY_NAMES: tuple[str, ...] = tuple(_FACTORIES)


def make_pin_factory(name: str | None) -> Factory | None:
    """Build the gpiozero pin factory called `name`, or return None for gpiozero's default.

    None lets gpiozero choose (it honours GPIOZERO_PIN_FACTORY, and picks lgpio on a current
    Pi). "mock" gives a fresh `MockFactory` of `MockPin`s, which model pull resistors; build it
    once per node and hand the same instance to every device. A backend whose library is not
    installed raises ImportError saying which one is missing.
    """
    if name is None:
        return None
    key = name.strip().lower()
    if key not in _FACTORIES:
        raise ValueError(
            f"unknown GPIO pin factory {name!r}; choose one of: {', '.join(FACTORY_NAMES)}"
        )
    module_name, class_name = _FACTORIES[key]
    try:
        module = import_module(module_name)
    except ImportError as exc:
        raise ImportError(
            f"GPIO pin factory {key!r} needs a library that is not installed ({exc}); "
            f"install it or choose another of: {', '.join(FACTORY_NAMES)}"
        ) from exc
    factory_class = getattr(module, class_name)
    if key == "mock":
        # Pin explicitly: GPIOZERO_MOCK_PIN_CLASS could otherwise pick a pin without pulls.
        factory: Factory = factory_class(pin_class=module.MockPin)
    else:
        factory = factory_class()
    return factory
