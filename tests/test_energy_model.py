"""The energy model: counters times the board's power table, and the board read from the
device tree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from device.contracts.energy import (
    BOARDS,
    FALLBACK_BOARD,
    Counters,
    board_from_model,
    budget,
    detect_board,
)
from device.power.counters import EnergyCounters
from tests.support.clock import ManualClock

DAY = 86400.0


def test_every_figure_of_every_board_names_its_source():
    for name, power in BOARDS.items():
        for figure in ("idle_w", "cpu_w_per_core", "camera_w", "radio_w", "capture_j"):
            assert getattr(power, figure) > 0, (name, figure)
            assert power.sources[figure].strip(), (name, figure)


def test_a_day_idle_costs_the_boards_idle_watts_times_24_hours():
    result = budget(Counters(uptime_s=DAY), "zero2w", battery_wh=100)
    assert result.idle_wh == pytest.approx(BOARDS["zero2w"].idle_w * 24)
    assert result.total_wh == pytest.approx(result.idle_wh)
    # 0.6 W idle: a 100 Wh pack lasts about a week (the issue's own figure).
    assert result.days_full == pytest.approx(100 / (0.6 * 24))
    assert 6.5 < result.days_full < 7.5


def test_rates_are_counters_over_uptime_scaled_to_a_day():
    pi4 = BOARDS["pi4"]
    # Two hours counted, the camera on for one of them: half of every day.
    counters = Counters(
        uptime_s=7200,
        camera_on_s=3600,
        radio_on_s=720,
        captures=30,
        cpu_s={"vision": 36.0, "capture": 7.2},
    )
    result = budget(counters, "pi4", battery_wh=200)
    assert result.camera_wh == pytest.approx(pi4.camera_w * 12)
    assert result.radio_wh == pytest.approx(pi4.radio_w * 2.4)
    # 36 CPU-seconds in 2 h = 432 CPU-seconds a day at one busy core's extra watts.
    assert result.cpu_wh["vision"] == pytest.approx(pi4.cpu_w_per_core * 432 / 3600)
    assert result.cpu_wh["capture"] == pytest.approx(pi4.cpu_w_per_core * 86.4 / 3600)
    assert result.captures_wh == pytest.approx(pi4.capture_j * 360 / 3600)
    assert result.total_wh == pytest.approx(sum(wh for _, wh in result.activities()))
    assert not result.rough


def test_under_an_hour_of_counters_the_estimate_is_marked_rough():
    assert budget(Counters(uptime_s=1800), "pi3", 50).rough
    assert not budget(Counters(uptime_s=3600), "pi3", 50).rough


def test_no_counted_time_gives_idle_only_and_no_division_by_zero():
    result = budget(Counters(uptime_s=0, camera_on_s=0, captures=3), "pi5", 100)
    assert result.total_wh == pytest.approx(BOARDS["pi5"].idle_w * 24)
    assert result.rough


def test_days_left_follow_the_last_battery_percent():
    result = budget(Counters(uptime_s=DAY), "pi4", battery_wh=130, battery_pct=40)
    assert result.days_left == pytest.approx(result.days_full * 0.4)
    assert budget(Counters(uptime_s=DAY), "pi4", 130).days_left is None


def test_the_agents_own_counters_feed_the_model():
    clock = ManualClock(start=0.0)
    counters = EnergyCounters(clock=clock.monotonic, radio_always_on=False)
    counters.camera(True)
    clock.advance(1800)
    counters.camera(False)
    counters.add_captures(3)
    clock.advance(1800)
    snapshot = counters.snapshot({"vision": 10.0})
    result = budget(snapshot, "zero2w", 100)
    assert result.camera_wh == pytest.approx(BOARDS["zero2w"].camera_w * 12)
    assert result.radio_wh == 0


@pytest.mark.parametrize(
    ("model", "board"),
    [
        ("Raspberry Pi Zero 2 W Rev 1.0", "zero2w"),
        ("Raspberry Pi 3 Model B Rev 1.2", "pi3"),
        ("Raspberry Pi 3 Model B Plus Rev 1.3", "pi3"),
        ("Raspberry Pi 4 Model B Rev 1.5", "pi4"),
        ("Raspberry Pi Compute Module 4 Rev 1.0", "pi4"),
        ("Raspberry Pi 5 Model B Rev 1.0", "pi5"),
        ("Raspberry Pi Model B Plus Rev 1.2", None),
        ("Pine64 RockPro64", None),
    ],
)
def test_device_tree_models_name_their_board(model, board):
    assert board_from_model(model) == board


def test_auto_reads_the_device_tree_and_its_trailing_nul(tmp_path):
    model = tmp_path / "model"
    model.write_bytes(b"Raspberry Pi Zero 2 W Rev 1.0\x00")
    assert detect_board(model) == ("zero2w", "")
    result = budget(Counters(uptime_s=DAY), "auto", 100, model_path=model)
    assert result.board == "zero2w" and result.board_note == ""


def test_auto_elsewhere_falls_back_to_pi4_and_says_so(tmp_path):
    board, note = detect_board(tmp_path / "no-such-model")
    assert board == FALLBACK_BOARD == "pi4"
    assert "pi4 assumed" in note
    other = tmp_path / "model"
    other.write_bytes(b"Pine64 RockPro64\x00")
    board, note = detect_board(other)
    assert board == "pi4" and "'Pine64 RockPro64' is not in the power table" in note


def test_an_unknown_board_or_an_empty_battery_is_refused():
    with pytest.raises(ValueError, match="board 'pi2'"):
        budget(Counters(uptime_s=DAY), "pi2", 100)
    with pytest.raises(ValueError, match="must be above 0"):
        budget(Counters(uptime_s=DAY), "pi4", 0)


def test_docs_energy_md_shows_the_table_the_code_uses():
    text = (Path(__file__).parent.parent / "docs" / "energy.md").read_text()
    for name, power in BOARDS.items():
        row = re.search(rf"^\| `{name}` \|(.*)$", text, re.M)
        assert row is not None, f"docs/energy.md has no row for {name}"
        figures = [
            float(re.match(r"\s*([0-9.]+)", cell).group(1)) for cell in row.group(1).split("|")[:5]
        ]  # type: ignore[union-attr]
        assert figures == [
            power.idle_w,
            power.cpu_w_per_core,
            power.camera_w,
            power.radio_w,
            power.capture_j,
        ], name
