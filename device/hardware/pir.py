"""The PIR motion sensor, on gpiozero.

``pin_factory = "mock"`` selects gpiozero's own MockFactory (simulation, tests); ``"auto"``
leaves gpiozero to pick the Pi's native factory (or GPIOZERO_PIN_FACTORY).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gpiozero import MotionSensor

    from device.config import PirSection


def use_mock_pins() -> None:
    """Switch gpiozero to its MockFactory (PWM-capable, so the IR output works too)."""
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    if not isinstance(Device.pin_factory, MockFactory):
        Device.pin_factory = MockFactory(pin_class=MockPWMPin)


class PirSensor:
    """Calls ``on_motion`` on every rising edge, from gpiozero's sampling thread.

    Detection delay is about ``queue_len / sample_rate`` seconds; ``on_motion`` must return
    quickly (the capture loop only enqueues the trigger).
    """

    def __init__(self, section: PirSection, on_motion: Callable[[], None]) -> None:
        from gpiozero import MotionSensor

        from device.hardware.gpio import open_pin_device

        if section.pin_factory == "mock":
            use_mock_pins()
        self.section = section
        self.sensor: MotionSensor = open_pin_device(
            MotionSensor,
            section.pin,
            "pir.pin, the PIR sensor",
            queue_len=section.queue_len,
            sample_rate=section.sample_rate,
            threshold=section.threshold,
        )
        # The first read sets gpiozero's baseline; without it the first edge is swallowed.
        _ = self.sensor.motion_detected
        self.sensor.when_motion = on_motion

    @property
    def detection_delay_s(self) -> float:
        return self.section.queue_len / self.section.sample_rate

    def mock_pin(self):  # gpiozero MockPin; only meaningful under MockFactory
        return self.sensor.pin

    def close(self) -> None:
        self.sensor.when_motion = None
        self.sensor.close()
