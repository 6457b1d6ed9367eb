"""The IR illuminator: modes, schedule across midnight, and auto mode that does not flap.

Pins are gpiozero's own MockFactory, one made for each test the way the agent makes its own
(``make_pin_factory``) and handed to the light; each test reads that mock pin's output state.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from gpiozero.pins import Factory

from device.config import IrSection, PirSection
from device.hardware.gpio import make_pin_factory
from device.hardware.ir import IrLight, in_schedule, parse_hhmm

PIN = 22
NOON = datetime(2026, 6, 1, 12, 0)


def mock_factory() -> Factory:
    return make_pin_factory(PirSection(pin_factory="mock"))


@pytest.fixture
def pins() -> Iterator[Factory]:
    factory = mock_factory()
    yield factory
    factory.close()


def pin_is_high(pins: Factory) -> bool:
    return bool(pins.pin(PIN).state)


def light(pins: Factory, **overrides: object) -> IrLight:
    values: dict[str, object] = {"pin": PIN}
    values.update(overrides)
    return IrLight(IrSection(**values), pin_factory=pins, min_dwell_s=0.0)


def test_starts_off(pins: Factory) -> None:
    ir = light(pins, mode="on")
    assert not ir.is_on and not pin_is_high(pins)


def test_on_and_off_modes_drive_the_pin(pins: Factory) -> None:
    ir = light(pins, mode="on")
    assert ir.update(200.0, NOON) is True
    assert ir.is_on and pin_is_high(pins)
    ir.section.mode = "off"  # a remote change takes effect on the next frame
    assert ir.update(5.0, NOON) is False
    assert not ir.is_on and not pin_is_high(pins)


@pytest.mark.parametrize(
    ("clock", "expected"),
    [
        ("17:59", False),
        ("18:00", True),
        ("23:30", True),
        ("00:00", True),
        ("03:15", True),
        ("05:59", True),
        ("06:00", False),
        ("12:00", False),
    ],
)
def test_schedule_spans_midnight(clock: str, expected: bool, pins: Factory) -> None:
    ir = light(pins, mode="schedule", schedule_on="18:00", schedule_off="06:00")
    hour, minute = (int(v) for v in clock.split(":"))
    assert ir.update(None, NOON.replace(hour=hour, minute=minute)) is expected
    assert pin_is_high(pins) is expected


def test_schedule_within_one_day() -> None:
    on, off = parse_hhmm("08:00", "on"), parse_hhmm("10:30", "off")
    assert in_schedule(parse_hhmm("09:00", "t"), on, off)
    assert not in_schedule(parse_hhmm("07:59", "t"), on, off)
    assert not in_schedule(parse_hhmm("10:30", "t"), on, off)
    assert not in_schedule(parse_hhmm("22:00", "t"), on, off)


def test_schedule_ignores_the_frame_brightness(pins: Factory) -> None:
    ir = light(pins, mode="schedule", schedule_on="18:00", schedule_off="06:00")
    assert ir.update(250.0, NOON.replace(hour=22)) is True
    assert ir.update(0.0, NOON) is False


def test_auto_switches_with_hysteresis(pins: Factory) -> None:
    ir = light(pins, mode="auto", dark_threshold=40.0)  # off again only above 40 + 15
    t = NOON
    states = []
    for mean in (80.0, 39.0, 45.0, 54.0, 56.0, 45.0, 41.0, 39.5):
        t += timedelta(seconds=1)
        states.append(ir.update(mean, t))
    assert states == [False, True, True, True, False, False, False, True]
    assert pin_is_high(pins)


def test_auto_holds_a_state_for_the_dwell_time(pins: Factory) -> None:
    section = IrSection(pin=PIN, mode="auto", dark_threshold=40.0)
    ir = IrLight(section, pin_factory=pins, min_dwell_s=60.0)
    assert ir.update(10.0, NOON) is True
    # The light brightens the scene a lot; it must not switch off at once.
    assert ir.update(120.0, NOON + timedelta(seconds=10)) is True
    assert ir.update(120.0, NOON + timedelta(seconds=59)) is True
    assert ir.update(120.0, NOON + timedelta(seconds=61)) is False
    assert not pin_is_high(pins)


def test_auto_keeps_its_state_without_a_reading(pins: Factory) -> None:
    ir = light(pins, mode="auto", dark_threshold=40.0)
    ir.update(10.0, NOON)
    assert ir.update(None, NOON + timedelta(seconds=1)) is True
    assert pin_is_high(pins)


def test_without_a_pin_there_is_no_light() -> None:
    ir = IrLight(IrSection(pin=None, mode="on"))
    assert ir.update(0.0, NOON) is False
    assert not ir.is_on
    ir.close()


def test_close_switches_the_light_off(pins: Factory) -> None:
    ir = light(pins, mode="on")
    ir.update(None, NOON)
    assert pin_is_high(pins)
    ir.close()
    assert not pin_is_high(pins) and not ir.is_on


def test_an_unparseable_schedule_fails_at_start(pins: Factory) -> None:
    with pytest.raises(ValueError, match="schedule_on"):
        IrLight(IrSection(pin=PIN, mode="schedule", schedule_on="25:00"), pin_factory=pins)


def test_each_light_drives_the_pin_of_the_factory_it_was_given(pins: Factory) -> None:
    """Two traps in one process, each with its own factory: neither sees the other's pin."""
    other = mock_factory()
    try:
        mine = light(pins, mode="on")
        theirs = IrLight(IrSection(pin=PIN, mode="off"), pin_factory=other, min_dwell_s=0.0)
        mine.update(None, NOON)
        theirs.update(None, NOON)
        assert pin_is_high(pins) and not pin_is_high(other)
        mine.close()
        theirs.close()
    finally:
        other.close()
