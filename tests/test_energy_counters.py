"""The agent's own energy counters: camera-on and radio-on seconds, captures."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from device.power.counters import EnergyCounters
from device.power.report import BatteryReading, PowerReport
from device.power.state_file import PowerStateError, load_report, save_report


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_camera_on_time_adds_up_over_starts_and_stops_and_counts_a_running_camera() -> None:
    clock = Ticks()
    counters = EnergyCounters(clock=clock, radio_always_on=False)
    counters.camera(True)
    clock.now = 10
    counters.camera(False)
    clock.now = 50
    counters.camera(True)
    counters.camera(True)  # already on: no second start
    clock.now = 55
    snap = counters.snapshot()
    assert snap.camera_on_s == 15
    assert snap.uptime_s == 55
    assert snap.radio_on_s == 0


def test_without_a_radio_switch_the_radio_counts_as_on_all_along() -> None:
    clock = Ticks()
    counters = EnergyCounters(clock=clock)
    clock.now = 30
    counters.radio(False)
    clock.now = 40
    assert counters.snapshot().radio_on_s == 30
    assert not counters.radio_is_on


def test_captures_counted_from_many_threads_are_all_kept() -> None:
    counters = EnergyCounters()
    threads = [
        threading.Thread(target=lambda: [counters.add_captures() for _ in range(1000)])
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counters.snapshot({"capture": 1.5}).captures == 4000


def test_the_power_state_file_round_trips_and_a_damaged_one_is_named(tmp_path: Path) -> None:
    assert load_report(tmp_path) is None
    report = PowerReport(
        "low-power", "zero2w", EnergyCounters().snapshot({"vision": 2.0}), BatteryReading(61.0)
    )
    save_report(tmp_path, report)
    assert load_report(tmp_path) == report
    (tmp_path / "power-state.json").write_text('{"format": 1, "profile": "x"}')
    with pytest.raises(PowerStateError, match=r"power-state.json: not a power state file"):
        load_report(tmp_path)
    (tmp_path / "power-state.json").write_bytes(b"\x00garbage")
    with pytest.raises(PowerStateError, match="not valid JSON"):
        load_report(tmp_path)


def test_a_save_cut_short_leaves_a_part_file_the_next_start_removes(tmp_path: Path) -> None:
    from device.power.ledger import EnergyLedger

    report = PowerReport("always-ready", "pi4", EnergyCounters().snapshot())
    save_report(tmp_path, report)
    (tmp_path / "power-state.json.part").write_bytes(b'{"format": 1, "prof')
    ledger = EnergyLedger(tmp_path, EnergyCounters())
    assert ledger.previous == report
    assert not (tmp_path / "power-state.json.part").exists()
