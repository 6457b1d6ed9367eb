"""The PIR by interrupt: pir.detect = "edge" calls on_motion from the pin factory's edge
callback, with no thread polling the pin; "sampled" keeps gpiozero's MotionSensor.

gpiozero's MockFactory is the pin factory here: driving a mock pin high fires the edge
callbacks as a Pi's lgpio alert would.
"""

from __future__ import annotations

import threading

import pytest
from gpiozero import DigitalInputDevice, MotionSensor

from device.agent import Agent
from device.config import PirSection
from device.hardware.gpio import make_pin_factory
from device.hardware.pir import PirSensor
from tests.support.clock import ManualClock
from tests.support.world import trap_settings


@pytest.fixture
def factory():
    pins = make_pin_factory(PirSection(pin_factory="mock"))
    yield pins
    pins.close()


def test_an_edge_sensor_calls_on_motion_at_each_rising_edge_and_polls_nothing(factory):
    calls: list[str] = []
    threads_before = threading.active_count()
    pir = PirSensor(
        PirSection(pin_factory="mock", detect="edge"),
        lambda: calls.append(threading.current_thread().name),
        pin_factory=factory,
    )
    try:
        assert isinstance(pir.sensor, DigitalInputDevice)
        assert not isinstance(pir.sensor, MotionSensor)
        assert threading.active_count() == threads_before, "no sampling thread"
        pin = pir.mock_pin()
        pin.drive_high()
        assert len(calls) == 1, "the very first edge counts: there is no baseline to read"
        pin.drive_low()
        assert len(calls) == 1
        pin.drive_high()
        assert len(calls) == 2
        assert pir.detection_delay_s == 0.0
    finally:
        pir.close()


@pytest.mark.parametrize(("bounce_s", "expected"), [(0.02, 0.02), (0.0, None)])
def test_the_edge_sensor_debounces_by_pir_bounce_s(factory, bounce_s, expected):
    pir = PirSensor(
        PirSection(pin_factory="mock", bounce_s=bounce_s), lambda: None, pin_factory=factory
    )
    try:
        assert pir.mock_pin().bounce == expected
    finally:
        pir.close()


def test_a_sampled_sensor_still_reports_motion_from_its_sampling_thread(factory):
    seen = threading.Event()
    pir = PirSensor(
        PirSection(pin_factory="mock", detect="sampled", sample_rate=100.0),
        seen.set,
        pin_factory=factory,
    )
    try:
        assert isinstance(pir.sensor, MotionSensor)
        pir.mock_pin().drive_high()
        assert seen.wait(5)
        assert pir.detection_delay_s == pytest.approx(0.01)
    finally:
        pir.close()


@pytest.mark.parametrize("detect", ["edge", "sampled"])
def test_the_agent_captures_pir_edges_in_either_mode(tmp_path, detect):
    clock = ManualClock()
    settings = trap_settings(tmp_path, pir={"pin_factory": "mock", "detect": detect})
    agent = Agent(settings, timer=clock)
    agent.start()
    try:
        assert agent.pir is not None
        pin = agent.pir.mock_pin()
        for bursts in (1, 2):
            pin.drive_high()
            clock.run_until(lambda n=bursts: agent.capture.stats.events == n)
            clock.run_until(agent.capture.is_idle)
            pin.drive_low()
            assert agent.pir.sensor.wait_for_no_motion(10)
            clock.advance(settings.capture.cooldown_s)
    finally:
        agent.stop()
    assert agent.capture.stats.triggers == 2
