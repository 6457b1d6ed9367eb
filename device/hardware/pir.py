"""The PIR motion sensor, on gpiozero.

It is opened on the pin factory it is given (``device.hardware.gpio.make_pin_factory``: the
one the agent made from ``pir.pin_factory``), never on gpiozero's global one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gpiozero import MotionSensor
    from gpiozero.pins import Factory
    from gpiozero.pins.mock import MockPin

    from device.config import PirSection


def use_mock_pins() -> None:
    """Deprecated: installs gpiozero's MockFactory as its global ``Device.pin_factory``.

    Kept only for callers not yet given a factory (tests/support/world.py and
    tests/support/provisioning.py fixtures, provisioning/selftest.py, tests/bench). New code
    passes ``make_pin_factory(settings.pir)`` to the devices instead; remove this with the
    last caller.
    """
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    if not isinstance(Device.pin_factory, MockFactory):
        Device.pin_factory = MockFactory(pin_class=MockPWMPin)


class PirSensor:
    """Calls ``on_motion`` on every rising edge, from gpiozero's sampling thread.

    Detection delay is about ``queue_len / sample_rate`` seconds; ``on_motion`` must return
    quickly (the capture loop only enqueues the trigger). ``pin_factory`` None means what it
    means to gpiozero: its global default factory.
    """

    def __init__(
        self,
        section: PirSection,
        on_motion: Callable[[], None],
        *,
        pin_factory: Factory | None = None,
    ) -> None:
        from gpiozero import MotionSensor

        from device.hardware.gpio import open_pin_device

        self.section = section
        self.sensor: MotionSensor = open_pin_device(
            MotionSensor,
            section.pin,
            "pir.pin, the PIR sensor",
            queue_len=section.queue_len,
            sample_rate=section.sample_rate,
            threshold=section.threshold,
            pin_factory=pin_factory,
        )
        # The first read sets gpiozero's baseline; without it the first edge is swallowed.
        _ = self.sensor.motion_detected
        self.sensor.when_motion = on_motion

    @property
    def detection_delay_s(self) -> float:
        return self.section.queue_len / self.section.sample_rate

    def mock_pin(self) -> MockPin:
        """The sensor's pin, to drive high and low; only a MockFactory pin can be driven."""
        return self.sensor.pin

    def close(self) -> None:
        self.sensor.when_motion = None
        self.sensor.close()
