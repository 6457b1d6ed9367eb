"""Low-battery shedding goes down in steps, comes back up with a margin, and never acts on a
reading it does not have.

Thresholds are the config defaults (40, 25, 15, 5 %, margin 5) unless a test says otherwise.
The monitor reads a fake sysfs power_supply tree the test rewrites, on a fake clock.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from device.config import BatterySection
from device.power.battery import SysfsGauge
from device.power.report import SHED_STEPS, BatteryReading
from device.power.shedding import (
    SHUTDOWN,
    BatteryMonitor,
    ShedLadder,
    apply_level,
)
from tests.support.clock import ManualClock

DEFAULTS = BatterySection()


def ladder(**keys) -> ShedLadder:  # type: ignore[no-untyped-def]
    return ShedLadder(BatterySection(**keys))


def walk(shed: ShedLadder, *percents: float | None) -> list[int]:
    return [shed.update(p) for p in percents]


def test_the_defaults_are_the_documented_steps():
    assert (
        DEFAULTS.stop_blank_media_pct,
        DEFAULTS.stop_classifying_pct,
        DEFAULTS.stop_timelapse_pct,
        DEFAULTS.shutdown_pct,
        DEFAULTS.recover_margin_pct,
    ) == (40.0, 25.0, 15.0, 5.0, 5.0)


def test_a_draining_battery_takes_each_step_below_its_threshold():
    shed = ladder()
    assert walk(shed, 80, 40, 39.9, 25, 24, 15, 14, 6) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert shed.steps == SHED_STEPS[:3]


def test_a_large_drop_takes_several_steps_at_once():
    assert walk(ladder(), 90, 20) == [0, 2]


def test_shutdown_needs_two_readings_in_a_row_below_its_threshold():
    shed = ladder()
    assert walk(shed, 50, 0) == [0, 3], "one 0 V glitch: every step but the poweroff"
    assert walk(shed, 28) == [2], "it was a glitch"
    assert walk(shed, 4, 6, 4.5) == [3, 3, 3], "a reading above it starts the count again"
    assert walk(shed, 4.5) == [SHUTDOWN]


def test_shutdown_is_final_for_the_run():
    shed = ladder()
    walk(shed, 3, 3)
    assert walk(shed, 100, None, 50) == [SHUTDOWN] * 3


def test_a_recovering_battery_walks_back_only_past_threshold_plus_margin():
    shed = ladder()
    walk(shed, 12)
    assert shed.level == 3
    # 15 % is stop_timelapse_pct: back above it, but not by the 5 % margin yet.
    assert walk(shed, 15, 19.9) == [3, 3]
    assert walk(shed, 20) == [2], "timelapse is back at 15 + 5"
    assert walk(shed, 29, 30) == [2, 1]
    assert walk(shed, 44, 45) == [1, 0]


def test_a_sagging_pack_does_not_flap_between_steps():
    shed = ladder()
    # Under load the pack reads just below 40 %, at rest just above.
    assert walk(shed, 39, 41, 38.5, 42, 39.5, 43) == [1] * 6


def test_a_charger_walks_back_every_step_it_passed_in_one_reading():
    shed = ladder()
    walk(shed, 12)
    assert walk(shed, 95) == [0]


def test_no_reading_keeps_the_level():
    shed = ladder()
    assert walk(shed, None, None) == [0, 0], "no gauge: nothing shed"
    walk(shed, 20)
    assert walk(shed, None) == [2]
    walk(shed, 4)
    assert walk(shed, None, None) == [3, 3], "no reading never counts towards a shutdown"
    assert walk(shed, 4) == [SHUTDOWN], "nor hides the two that did"


def test_a_threshold_of_zero_turns_its_step_off():
    shed = ladder(stop_timelapse_pct=0, shutdown_pct=0)
    assert walk(shed, 0, 0, 0) == [2, 2, 2]


class Effects:
    def __init__(self) -> None:
        self.calls: list[tuple[str, bool]] = []

    def send_blank_media(self, allowed: bool) -> None:
        self.calls.append(("blank_media", allowed))

    def classify(self, allowed: bool) -> None:
        self.calls.append(("classify", allowed))

    def timelapse(self, allowed: bool) -> None:
        self.calls.append(("timelapse", allowed))

    def shut_down(self) -> None:
        self.calls.append(("shutdown", True))


@pytest.mark.parametrize("level", range(SHUTDOWN + 1))
def test_applying_a_level_switches_off_exactly_its_steps(level):
    effects = Effects()
    apply_level(level, effects)
    off = {name for name, allowed in effects.calls if not allowed or name == "shutdown"}
    assert off == set(SHED_STEPS[:level])


# -- the monitor -------------------------------------------------------------------------------


class Trap:
    """A sysfs battery the test drains, watched by a monitor on a fake clock."""

    def __init__(self, root: Path, percent: int = 80) -> None:
        self.node = root / "BAT0"
        self.node.mkdir(parents=True)
        self.set(percent)
        self.clock = ManualClock(start=0.0)
        self.changes: list[int] = []
        self.readings: list[BatteryReading] = []
        self.changed = threading.Event()
        self.monitor = BatteryMonitor(
            SysfsGauge(self.node),
            ShedLadder(DEFAULTS),
            interval_s=DEFAULTS.poll_interval_s,
            on_change=self.on_change,
            on_reading=self.readings.append,
            clock=self.clock,
        )

    def set(self, percent: int | str) -> None:
        (self.node / "capacity").write_text(f"{percent}\n")

    def on_change(self, level: int, reading: BatteryReading) -> None:
        self.changes.append(level)
        self.changed.set()

    def next_poll(self) -> None:
        """Let one poll interval pass; returns once the monitor has read again."""
        reads = self.monitor.reads
        assert self.clock.advance_to_next() == pytest.approx(DEFAULTS.poll_interval_s)
        self.clock.run_until(lambda: self.monitor.reads > reads)


@pytest.fixture
def trap(tmp_path):
    trap = Trap(tmp_path)
    trap.monitor.start()
    trap.clock.run_until(lambda: trap.monitor.reads == 1)
    yield trap
    trap.monitor.stop(5)
    assert not trap.monitor.is_alive()


def test_the_monitor_reads_once_per_interval_and_reports_each_change(trap):
    trap.next_poll()
    assert trap.changes == []
    trap.set(30)
    trap.next_poll()
    assert trap.changes == [1]
    trap.set(20)
    trap.next_poll()
    trap.set(50)
    trap.next_poll()
    assert trap.changes == [1, 2, 0]
    assert [r.percent for r in trap.readings] == [80, 80, 30, 20, 50]
    assert trap.monitor.reads == 5, "no read between intervals"


def test_a_garbage_reading_keeps_the_level_and_is_logged_once(trap, caplog):
    trap.set(20)
    trap.next_poll()
    assert trap.changes == [2]
    caplog.set_level(logging.INFO, logger="camtrap.power")
    trap.set("garbage")
    for _ in range(3):
        trap.next_poll()
    assert trap.changes == [2], "a doubt sheds nothing more and restores nothing"
    assert trap.monitor.level == 2
    assert trap.readings[-1].percent is None, "the status shows unknown, not a stale charge"
    failures = [r.getMessage() for r in caplog.records if "battery gauge:" in r.getMessage()]
    assert len(failures) == 1 and "is not a percent" in failures[0]
    trap.set(19)
    trap.next_poll()
    assert any("reading again" in r.getMessage() for r in caplog.records)


def test_a_vanished_supply_never_shuts_the_trap_down(trap):
    trap.set(4)
    trap.next_poll()
    assert trap.changes == [3]
    (trap.node / "capacity").unlink()
    for _ in range(3):
        trap.next_poll()
    assert trap.monitor.level == 3
    trap.set(4)
    trap.clock.advance_to_next()  # the second reading below shutdown_pct
    trap.monitor.join(5)
    assert not trap.monitor.is_alive(), "at shutdown the monitor's work is done"
    assert trap.changes == [3, SHUTDOWN]


def test_a_failing_callback_does_not_end_battery_watching(tmp_path):
    trap = Trap(tmp_path, percent=30)

    def broken(level: int, reading: BatteryReading) -> None:
        trap.changes.append(level)
        raise RuntimeError("a bug in the agent's wiring")

    trap.monitor.on_change = broken
    trap.monitor.start()
    try:
        trap.clock.run_until(lambda: trap.monitor.reads == 1)
        trap.set(20)
        trap.next_poll()
        assert trap.changes == [1, 2]
    finally:
        trap.monitor.stop(5)


def test_the_shutdown_callback_may_stop_the_monitor_from_its_own_thread(tmp_path):
    trap = Trap(tmp_path, percent=3)
    stopped = threading.Event()

    def shut_down(level: int, reading: BatteryReading) -> None:
        trap.changes.append(level)
        if level == SHUTDOWN:
            trap.monitor.stop(5)  # what the agent's stop does, called from here
            stopped.set()

    trap.monitor.on_change = shut_down
    trap.monitor.start()
    trap.clock.run_until(lambda: trap.monitor.reads == 1)
    trap.clock.advance_to_next()
    assert stopped.wait(5)
    trap.monitor.join(5)
    assert trap.changes == [3, SHUTDOWN] and not trap.monitor.is_alive()
