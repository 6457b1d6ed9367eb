"""Energy counters add up over the agent's runs in one data dir; a bad state file costs the
history, never the run."""

from __future__ import annotations

import logging

import pytest

from device.power.counters import EnergyCounters
from device.power.ledger import EnergyLedger
from device.power.report import PowerReport
from device.power.state_file import load_report
from tests.support.clock import ManualClock


def one_run(data_dir, *, hours: float, captures: int, vision_s: float, wall: float) -> EnergyLedger:
    clock = ManualClock(start=0.0)
    counters = EnergyCounters(clock=clock.monotonic, wall=lambda: wall)
    ledger = EnergyLedger(data_dir, counters)
    counters.camera(True)
    clock.advance(hours * 1800)
    counters.camera(False)
    counters.add_captures(captures)
    clock.advance(hours * 1800)
    total = ledger.total({"vision": vision_s, "main": 1.0})
    ledger.save(PowerReport(profile="always-ready", board="pi4", counters=total))
    return ledger


def test_a_second_run_starts_from_the_first_runs_counters(tmp_path):
    one_run(tmp_path, hours=2, captures=5, vision_s=10.0, wall=1000.0)
    second = one_run(tmp_path, hours=1, captures=3, vision_s=4.0, wall=9000.0)
    assert second.previous is not None
    saved = load_report(tmp_path)
    assert saved is not None
    counters = saved.counters
    assert counters.since == 1000.0  # the first start of this data dir, not this run's
    assert counters.uptime_s == pytest.approx(3 * 3600)
    assert counters.camera_on_s == pytest.approx(1.5 * 3600)
    assert counters.radio_on_s == pytest.approx(3 * 3600)
    assert counters.captures == 8
    assert counters.cpu_s == {"vision": 14.0, "main": 2.0}


def test_the_first_run_has_no_base(tmp_path):
    ledger = EnergyLedger(tmp_path, EnergyCounters())
    assert ledger.previous is None and ledger.base is None
    assert ledger.total().captures == 0


def test_a_corrupt_state_file_is_logged_once_moved_aside_and_counting_starts_again(
    tmp_path, caplog
):
    state = tmp_path / "power-state.json"
    state.write_text("{ half a file")
    with caplog.at_level(logging.WARNING, logger="camtrap.power"):
        ledger = EnergyLedger(tmp_path, EnergyCounters(), wall=lambda: 1234.0)
    assert ledger.base is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "not valid JSON" in warnings[0].getMessage()
    assert not state.exists()
    aside = tmp_path / "power-state.json.unreadable-1234"
    assert aside.read_text() == "{ half a file"  # kept for a look, never deleted
    ledger.save(PowerReport(profile="low-power", board="pi3", counters=ledger.total()))
    assert load_report(tmp_path) is not None
