"""The trap's one gpiozero pin factory: made from ``pir.pin_factory``, passed to each device,
never installed as gpiozero's global ``Device.pin_factory``."""

from __future__ import annotations

import importlib.util

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPWMPin

from device.agent import Agent
from device.config import PirSection
from device.hardware.gpio import PinsUnavailable, make_pin_factory
from tests.support.world import trap_settings


def test_mock_is_gpiozero_s_mock_factory_with_pwm_pins_and_each_call_makes_a_new_one():
    first = make_pin_factory(PirSection(pin_factory="mock"))
    second = make_pin_factory(PirSection(pin_factory="mock"))
    try:
        assert isinstance(first, MockFactory) and first is not second
        assert isinstance(first.pin(18), MockPWMPin)
    finally:
        first.close()
        second.close()


@pytest.mark.skipif(
    any(importlib.util.find_spec(m) for m in ("lgpio", "RPi", "pigpio")),
    reason="a real GPIO pin library is installed here",
)
def test_auto_without_a_pin_library_names_the_pir_pin_and_installs_nothing():
    before = Device.pin_factory
    with pytest.raises(PinsUnavailable) as raised:
        make_pin_factory(PirSection(pin=23, pin_factory="auto"))
    assert "GPIO23" in str(raised.value) and "pir.pin" in str(raised.value)
    assert 'pin_factory = "mock"' in str(raised.value)
    assert Device.pin_factory is before


def test_the_agent_opens_its_pir_and_ir_on_its_own_factory(tmp_path):
    before = Device.pin_factory
    settings = trap_settings(tmp_path, ir={"pin": 22, "mode": "on"})
    agent = Agent(settings)
    agent.start()
    try:
        assert agent.pir is not None
        own = agent.pir.sensor.pin_factory
        assert isinstance(own, MockFactory) and own is not before
        agent.capture.trigger("test")
        assert agent.capture.wait_idle(10)
        assert agent.ir.is_on and own.pin(22).state == 1  # the light is on this factory's pin
    finally:
        agent.stop()
    assert Device.pin_factory is before
