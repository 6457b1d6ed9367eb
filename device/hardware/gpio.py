"""Opening a gpiozero device, with "no GPIO here" said as one line that names the pin."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from device.hardware import HardwareUnavailable

T = TypeVar("T")


class PinsUnavailable(HardwareUnavailable):
    """No pin library can drive the pin, or the pin is taken or invalid."""


def open_pin_device(factory: Callable[..., T], pin: int, role: str, **kwargs: Any) -> T:
    """``factory(pin, **kwargs)``; gpiozero's failures become PinsUnavailable naming the pin.

    gpiozero warns once per pin library it fails to load before it gives up; those warnings
    would be several lines of noise around the one line that matters, so they are muted here.
    """
    from gpiozero.exc import BadPinFactory, GPIOZeroError, PinFactoryFallback

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PinFactoryFallback)
        try:
            return factory(pin, **kwargs)
        except BadPinFactory as exc:
            raise PinsUnavailable(
                f"GPIO{pin} ({role}): no GPIO pin library works here ({exc}); on a Pi install "
                f'python3-lgpio, or set pir.pin_factory = "mock" to simulate'
            ) from exc
        except (GPIOZeroError, OSError) as exc:
            raise PinsUnavailable(f"GPIO{pin} ({role}): {type(exc).__name__}: {exc}") from exc
