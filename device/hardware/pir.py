"""The PIR motion sensor, on gpiozero.

It is opened on the pin factory it is given (``device.hardware.gpio.make_pin_factory``: the
one the agent made from ``pir.pin_factory``), never on gpiozero's global one.

Two ways to notice motion (``pir.detect``):

- ``edge`` (the default): a ``DigitalInputDevice`` whose rising edge comes from the pin
  factory's interrupt (lgpio's alert thread on a Pi; a MockFactory pin's ``drive_high`` in
  simulation and tests). Nothing runs while the pin is quiet.
- ``sampled``: gpiozero's ``MotionSensor``, whose queue thread reads the pin ``sample_rate``
  times a second and smooths ``queue_len`` samples; it rejects glitches shorter than a sample
  window, and keeps a thread awake all the time for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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


def _edge_sensor_class() -> type[Any]:
    """A DigitalInputDevice under MotionSensor's names, so callers (and tests) drive and wait
    on either kind of sensor the same way."""
    from gpiozero import DigitalInputDevice

    class EdgeMotionSensor(DigitalInputDevice):
        motion_detected = DigitalInputDevice.is_active
        when_motion = DigitalInputDevice.when_activated
        when_no_motion = DigitalInputDevice.when_deactivated
        wait_for_motion = DigitalInputDevice.wait_for_active
        wait_for_no_motion = DigitalInputDevice.wait_for_inactive

    return EdgeMotionSensor


class PirSensor:
    """Calls ``on_motion`` on every rising edge: from the pin factory's interrupt thread
    (``edge``) or gpiozero's sampling thread (``sampled``).

    ``on_motion`` must return quickly (the capture loop only enqueues the trigger).
    ``pin_factory`` None means what it means to gpiozero: its global default factory.
    """

    def __init__(
        self,
        section: PirSection,
        on_motion: Callable[[], None],
        *,
        pin_factory: Factory | None = None,
    ) -> None:
        from device.hardware.gpio import open_pin_device

        self.section = section
        self.detect = section.detect
        self.sensor: Any
        if self.detect == "edge":
            self.sensor = open_pin_device(
                _edge_sensor_class(),
                section.pin,
                "pir.pin, the PIR sensor",
                pull_up=False,  # PIR modules drive their output high on motion
                bounce_time=section.bounce_s or None,
                pin_factory=pin_factory,
            )
        else:
            from gpiozero import MotionSensor

            self.sensor = open_pin_device(
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
        """From the pin going high to ``on_motion``: the interrupt's latency (taken as 0 here)
        for ``edge``, about one smoothing window for ``sampled``."""
        if self.detect == "edge":
            return 0.0
        return self.section.queue_len / self.section.sample_rate

    def mock_pin(self) -> MockPin:
        """The sensor's pin, to drive high and low; only a MockFactory pin can be driven."""
        pin: MockPin = self.sensor.pin
        return pin

    def close(self) -> None:
        self.sensor.when_motion = None
        self.sensor.close()
