"""`camtrap energy`: the budget from the counters the agent left in its data dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from device.cli import main
from device.contracts.energy import BOARDS
from device.exitcodes import Exit
from device.power.counters import EnergyCounters
from device.power.ledger import EnergyLedger
from device.power.report import BatteryReading, PowerReport
from tests.support.clock import ManualClock

HOUR = 3600.0


def config_for(tmp_path: Path, extra: str = "") -> Path:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    path = tmp_path / "camtrap.toml"
    path.write_text(
        f'[storage]\ndata_dir = "{data}"\n[power]\nboard = "zero2w"\nbattery_wh = 100\n' + extra
    )
    return path


def agent_ran(data_dir: Path, hours: float, *, percent: float | None = 62.0) -> None:
    """What the agent leaves behind: real counters over ``hours``, the camera on for a tenth
    of them, 40 frames, saved through the ledger as the power state."""
    clock = ManualClock(start=0.0)
    counters = EnergyCounters(clock=clock.monotonic, wall=lambda: 1_780_000_000.0)
    ledger = EnergyLedger(data_dir, counters)
    counters.camera(True)
    clock.advance(hours * HOUR / 10)
    counters.camera(False)
    counters.add_captures(40)
    clock.advance(hours * HOUR * 9 / 10)
    battery = BatteryReading(percent=percent, voltage_v=3.9) if percent is not None else None
    ledger.save(
        PowerReport(
            profile="low-power",
            board="zero2w",
            counters=ledger.total({"vision": 120.0, "capture": 30.0, "other": 6.0}),
            battery=battery,
        )
    )


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_it_prints_wh_per_day_by_activity_and_the_days_the_battery_lasts(tmp_path, capsys):
    config = config_for(tmp_path)
    agent_ran(tmp_path / "data", hours=24)
    code, out, err = run(capsys, "--config", str(config), "energy")
    assert code == 0, err
    rows = {
        line[:16].strip(): float(line[16:])
        for line in out.splitlines()
        if line[:16].strip() and line[16:].strip().replace(".", "", 1).isdigit()
    }
    zero = BOARDS["zero2w"]
    assert rows["idle"] == pytest.approx(zero.idle_w * 24, abs=0.01)
    assert rows["camera on"] == pytest.approx(zero.camera_w * 2.4, abs=0.01)
    assert rows["cpu vision"] == pytest.approx(zero.cpu_w_per_core * 120 / 3600, abs=0.01)
    assert {"cpu capture", "cpu other", "radio on", "captures", "total"} <= set(rows)
    assert "board zero2w, battery 100 Wh, profile low-power" in out
    assert "24.0 h of agent time" in out and "rough" not in out
    assert "a full battery lasts" in out
    assert "at 62% (last reading):" in out


def test_json_carries_the_same_budget_for_machines(tmp_path, capsys):
    config = config_for(tmp_path)
    agent_ran(tmp_path / "data", hours=10)
    code, out, _ = run(capsys, "--config", str(config), "energy", "--json")
    assert code == 0
    body = json.loads(out)
    assert body["board"] == "zero2w" and body["battery_wh"] == 100
    assert body["battery_pct"] == 62.0
    assert body["hours_counted"] == pytest.approx(10)
    per_day = body["wh_per_day"]
    assert set(per_day) == {"idle", "camera_on", "cpu", "radio_on", "captures", "total"}
    assert per_day["cpu"]["vision"] > per_day["cpu"]["capture"] > 0
    assert body["days_full"] == pytest.approx(100 / per_day["total"])
    assert body["days_left"] == pytest.approx(body["days_full"] * 0.62)
    assert body["counters"]["captures"] == 40


def test_board_and_battery_on_the_command_line_win_over_the_config(tmp_path, capsys):
    config = config_for(tmp_path)
    agent_ran(tmp_path / "data", hours=24, percent=None)
    code, out, _ = run(
        capsys, "--config", str(config), "energy", "--board", "pi4", "--battery-wh", "500", "--json"
    )
    assert code == 0
    body = json.loads(out)
    assert body["board"] == "pi4" and body["battery_wh"] == 500
    assert body["wh_per_day"]["idle"] == pytest.approx(BOARDS["pi4"].idle_w * 24)
    assert body["days_left"] is None


def test_an_hour_of_counters_or_less_is_marked_rough(tmp_path, capsys):
    config = config_for(tmp_path)
    agent_ran(tmp_path / "data", hours=0.5)
    code, out, _ = run(capsys, "--config", str(config), "energy")
    assert code == 0
    assert "(rough: under an hour)" in out


def test_no_state_file_is_one_line_and_exit_no_input(tmp_path, capsys):
    config = config_for(tmp_path)
    code, out, err = run(capsys, "--config", str(config), "energy")
    assert code == Exit.NO_INPUT == 66
    assert out == ""
    state = tmp_path / "data" / "power-state.json"
    assert err.strip().splitlines() == [
        f"camtrap: no energy counters in {state}: the agent has not run here"
    ]


def test_a_corrupt_state_file_is_one_line_and_exit_data_error(tmp_path, capsys):
    config = config_for(tmp_path)
    (tmp_path / "data" / "power-state.json").write_text('{"format": 1, "profile": ')
    code, _, err = run(capsys, "--config", str(config), "energy")
    assert code == Exit.DATA_ERROR
    assert len(err.strip().splitlines()) == 1
    assert "power-state.json: not valid JSON" in err
    # The command only reads: the file stays for the agent (which moves it aside) and a look.
    assert (tmp_path / "data" / "power-state.json").exists()


def test_a_missing_data_dir_is_exit_no_data_dir(tmp_path, capsys):
    config = tmp_path / "camtrap.toml"
    config.write_text(f'[storage]\ndata_dir = "{tmp_path / "unmounted"}"\n')
    code, _, err = run(capsys, "--config", str(config), "energy")
    assert code == Exit.NO_DATA_DIR
    assert "does not exist (is the card mounted?)" in err


def test_a_bad_battery_size_is_a_usage_error(tmp_path, capsys):
    config = config_for(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main(["--config", str(config), "energy", "--battery-wh", "-3"])
    assert stop.value.code == Exit.USAGE
    assert "--battery-wh" in capsys.readouterr().err


def test_the_installed_command_runs_as_a_technician_runs_it(tmp_path):
    config = config_for(tmp_path)
    agent_ran(tmp_path / "data", hours=48)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMTRAP_")}
    env["CAMTRAP_CONFIG"] = str(config)
    result = subprocess.run(
        [sys.executable, "-m", "device.cli", "energy"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "a full battery lasts" in result.stdout
