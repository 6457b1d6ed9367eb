"""``camtrap status`` shows the power lines: the profile, the battery, the shedding steps in
force, the radio, and the next capture and sync windows, from the config and the
``power-state.json`` the agent leaves. A state file that cannot be read is one line and a
documented exit code, never a traceback; a trap whose agent never ran says so.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from device.exitcodes import Exit
from device.power.counters import EnergySnapshot
from device.power.report import BatteryReading, PowerReport
from device.power.state_file import path_in, save_report
from device.status import collect, render
from tests.support.trap_db import write_config
from tests.support.world import trap_settings

# 16:30 in Nairobi (UTC+3).
AT = datetime(2030, 6, 1, 13, 30, tzinfo=UTC)


def lines(report: dict) -> dict[str, str]:  # type: ignore[type-arg]
    """The rendered report as {label: value}."""
    out = {}
    for line in render(report).splitlines():
        label, _, value = line.partition("  ")
        out[label.strip()] = value.strip()
    return out


def battery_trap(tmp_path: Path, **power: object):  # type: ignore[no-untyped-def]
    settings = trap_settings(
        tmp_path,
        device={"id": "test-trap", "deployment_id": "dep-1", "timezone": "Africa/Nairobi"},
        power={"profile": "scheduled", "capture_windows": ["18:00-06:00"], **power},
        uplink={
            "transport": "none",
            "sync_windows": ["07:00-07:30", "19:00-19:15"],
            "radio_control": "nmcli",
            "radio": "wwan",
        },
    )
    save_report(
        settings.storage.data_dir,
        PowerReport(
            profile="scheduled",
            board="zero2w",
            counters=EnergySnapshot(
                since=0.0, uptime_s=3600, camera_on_s=60, radio_on_s=120, captures=3
            ),
            battery=BatteryReading(percent=23.4, voltage_v=3.61, source="sysfs BAT0"),
            shed_level=2,
            radio_on=False,
            days_left=4.25,
        ),
    )
    return settings


def test_status_shows_battery_shedding_radio_and_the_next_windows(tmp_path: Path) -> None:
    settings = battery_trap(tmp_path)
    report = collect(settings, now=AT)
    shown = lines(report)

    assert shown["power profile"] == "scheduled"
    assert shown["battery"] == "23% 3.61 V (sysfs BAT0); about 4.2 days left"
    assert shown["shedding"] == "blank_media, classify shed (2 of 4 steps)"
    assert shown["radio"] == "off; switched by nmcli radio wwan"
    assert shown["capture windows"] == (
        "18:00-06:00 (Africa/Nairobi): closed, next opens 2030-06-01T18:00+03:00"
    )
    assert shown["sync windows"] == (
        "07:00-07:30, 19:00-19:15 (Africa/Nairobi): closed, next opens 2030-06-01T19:00+03:00"
    )
    assert report["exit_code"] == 0
    assert report["power"]["state"]["shed_steps"] == ["blank_media", "classify"]
    assert report["power"]["sync_windows"]["open"] is False


def test_inside_a_window_status_says_when_it_closes(tmp_path: Path) -> None:
    settings = battery_trap(tmp_path)
    evening = datetime(2030, 6, 1, 16, 5, tzinfo=UTC)  # 19:05 in Nairobi
    shown = lines(collect(settings, now=evening))
    assert shown["sync windows"].endswith("OPEN now, closes 2030-06-01T19:15+03:00")
    assert shown["capture windows"].endswith("OPEN now, closes 2030-06-02T06:00+03:00")


def test_capture_windows_show_only_for_the_scheduled_profile(tmp_path: Path) -> None:
    settings = trap_settings(tmp_path, power={"profile": "low-power"})
    shown = lines(collect(settings, now=AT))
    assert "capture windows" not in shown
    assert shown["sync windows"] == "always (no sync windows)"


def test_a_trap_whose_agent_never_ran_says_so(tmp_path: Path) -> None:
    settings = trap_settings(tmp_path)
    report = collect(settings, now=AT)
    assert lines(report)["power state"] == "no power state yet (the agent has not run)"
    assert report["power"]["state"] is None
    assert report["exit_code"] == 0


def test_a_damaged_power_state_is_one_line_and_a_data_error(tmp_path: Path) -> None:
    settings = trap_settings(tmp_path)
    path_in(settings.storage.data_dir).write_text("{not json")
    report = collect(settings, now=AT)

    assert report["exit_code"] == int(Exit.DATA_ERROR)
    assert report["exit_message"].startswith(f"power state: {path_in(settings.storage.data_dir)}")
    assert "not valid JSON" in report["exit_message"]
    assert lines(report)["power state"].startswith("UNREADABLE: power state: ")
    assert lines(report)["events"] == "0", "everything else is still reported"


def test_the_command_prints_the_power_lines_and_json_without_a_traceback(tmp_path: Path) -> None:
    settings = battery_trap(tmp_path)
    config = write_config(settings, tmp_path / "camtrap.toml")
    text = subprocess.run(
        [sys.executable, "-m", "device.cli", "--config", str(config), "status"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert text.returncode == 0, text.stderr
    assert "battery" in text.stdout and "3.61 V (sysfs BAT0)" in text.stdout
    assert "sync windows" in text.stdout

    as_json = subprocess.run(
        [sys.executable, "-m", "device.cli", "--config", str(config), "status", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    power = json.loads(as_json.stdout)["power"]
    assert power["state"]["battery_percent"] == 23.4
    assert power["state"]["radio_on"] is False
    assert power["radio_control"] == "nmcli"

    path_in(settings.storage.data_dir).write_text("[]")
    broken = subprocess.run(
        [sys.executable, "-m", "device.cli", "--config", str(config), "status"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert broken.returncode == int(Exit.DATA_ERROR)
    assert "Traceback" not in broken.stderr
    [line] = broken.stderr.splitlines()
    assert "power-state.json" in line, line
