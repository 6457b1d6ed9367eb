"""gpiozero's pin factory, made once from the config and passed to every device opened on it,
and opening a device with "no GPIO here" said as one line that names the pin.

gpiozero lets each device take ``pin_factory=``; the agent makes one factory and hands it to
the PIR sensor and the IR light, so nothing depends on gpiozero's global ``Device.pin_factory``
and a test drives the mock pins of the trap it built (``PirSensor.mock_pin``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from device.hardware import HardwareUnavailable

if TYPE_CHECKING:
    from gpiozero.pins import Factory

    from device.config import PirSection

T = TypeVar("T")


class PinsUnavailable(HardwareUnavailable):
    """No pin library can drive the pin, or the pin is taken or invalid."""


def no_pin_library(pin: int, role: str, exc: BaseException) -> PinsUnavailable:
    return PinsUnavailable(
        f"GPIO{pin} ({role}): no GPIO pin library works here ({exc}); on a Pi install "
        f'python3-lgpio, or set pir.pin_factory = "mock" to simulate'
    )


def make_pin_factory(section: PirSection) -> Factory:
    """The factory ``pir.pin_factory`` names; it drives every GPIO pin of the trap.

    ``mock``: gpiozero's MockFactory with PWM-capable pins, so the IR output works too
    (simulation, tests). ``auto``: the factory gpiozero would pick here by itself
    (``GPIOZERO_PIN_FACTORY``, else lgpio, RPi.GPIO, pigpio, its native one). Without any,
    PinsUnavailable names the PIR pin, the one every trap has.
    """
    if section.pin_factory == "mock":
        from gpiozero.pins.mock import MockFactory, MockPWMPin

        return MockFactory(pin_class=MockPWMPin)
    from gpiozero import Device
    from gpiozero.exc import BadPinFactory, PinFactoryFallback

    with warnings.catch_warnings():
        # One warning per library gpiozero fails to load: noise around the line that matters.
        warnings.simplefilter("ignore", PinFactoryFallback)
        try:
            # gpiozero's own choice, made without installing it as Device.pin_factory (the
            # global every factory-less device would share); there is no public spelling.
            factory: Factory = Device._default_pin_factory()
        except BadPinFactory as exc:
            raise no_pin_library(section.pin, "pir.pin, the PIR sensor", exc) from exc
    return factory


def open_pin_device(device_class: Callable[..., T], pin: int, role: str, **kwargs: Any) -> T:
    """``device_class(pin, **kwargs)``; gpiozero's failures become PinsUnavailable naming the pin.

    Pass ``pin_factory=`` in ``kwargs``; without it gpiozero falls back to its global default,
    whose fallback warnings are muted here for the same reason as in ``make_pin_factory``.
    """
    from gpiozero.exc import BadPinFactory, GPIOZeroError, PinFactoryFallback

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PinFactoryFallback)
        try:
            return device_class(pin, **kwargs)
        except BadPinFactory as exc:
            raise no_pin_library(pin, role, exc) from exc
        except (GPIOZeroError, OSError) as exc:
            raise PinsUnavailable(f"GPIO{pin} ({role}): {type(exc).__name__}: {exc}") from exc
