"""The agent on a battery: the shedding steps reach the rooms, a recovering battery walks them
back, an empty one stops the agent cleanly and powers off, a long gap between windows halts it
with its wake armed, and the power state is left for `camtrap status` and `camtrap energy`."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from device.agent import Agent
from device.config import Settings
from device.power.counters import EnergyCounters
from device.power.room import PowerRoom
from device.power.state_file import load_report
from device.power.wake import SleepPlan
from tests.support.clock import ManualClock
from tests.support.world import trap_settings


def battery_at(root: Path, percent: float) -> None:
    """A UPS HAT's power_supply node, as the kernel shows it."""
    node = root / "BAT0"
    node.mkdir(parents=True, exist_ok=True)
    (node / "type").write_text("Battery\n")
    (node / "capacity").write_text(f"{percent:.0f}\n")
    (node / "voltage_now").write_text("3700000\n")
    (node / "status").write_text("Discharging\n")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def battery_trap(tmp_path: Path, percent: float, **sections: dict) -> Settings:
    supplies = tmp_path / "power_supply"
    battery_at(supplies, percent)
    battery = {"gauge": "sysfs", "sysfs_root": str(supplies), "poll_interval_s": 60}
    battery.update(sections.pop("battery", {}))
    return trap_settings(tmp_path, battery=battery, uplink={"transport": "none"}, **sections)


def next_read(agent: Agent, clock: ManualClock) -> None:
    """Carry the clock to the monitor's next read and wait until it was handled."""
    reads = agent.power.monitor.reads
    clock.advance(agent.settings.battery.poll_interval_s)
    clock.run_until(lambda: agent.power.monitor.reads > reads)


def test_a_falling_battery_sheds_step_by_step_and_a_recovering_one_walks_back(tmp_path, clock):
    settings = battery_trap(tmp_path, 80, vision={"enabled": True})
    supplies = settings.battery.sysfs_root
    agent = Agent(settings, timer=clock)
    agent.start()
    try:
        clock.run_until(lambda: agent.power.monitor.reads >= 1)
        assert agent.power.level == 0
        battery_at(supplies, 35)  # below stop_blank_media_pct (40)
        next_read(agent, clock)
        assert agent.power.level == 1
        assert agent.uplink._shed_blank_media
        assert agent.vision is not None and not agent.vision.paused
        battery_at(supplies, 12)  # below classify (25) and timelapse (15)
        next_read(agent, clock)
        assert agent.power.level == 3
        assert agent.vision.paused
        assert agent.capture.timelapse_suspended
        state = load_report(settings.storage.data_dir)
        assert state is not None and state.shed_level == 3 and state.battery is not None
        assert state.battery.percent == 12
        battery_at(supplies, 22)  # above 15 + 5: timelapse back; not yet 25 + 5
        next_read(agent, clock)
        assert agent.power.level == 2
        assert not agent.capture.timelapse_suspended and agent.vision.paused
        battery_at(supplies, 90)
        next_read(agent, clock)
        assert agent.power.level == 0
        assert not agent.vision.paused and not agent.uplink._shed_blank_media
    finally:
        agent.stop()
    assert agent.power_off_command is None


def test_an_empty_battery_stops_the_agent_cleanly_then_runs_the_shutdown_command(tmp_path, clock):
    marker = tmp_path / "powered-off"
    settings = battery_trap(
        tmp_path,
        3,
        battery={"shutdown_command": [sys.executable, "-c", f"open({str(marker)!r}, 'w')"]},
    )
    agent = Agent(settings, timer=clock)
    agent.start()
    try:
        clock.run_until(lambda: agent.power.monitor.reads >= 1)
        assert agent.power.level == 3  # one low reading sheds, but never powers off alone
        assert not agent._stop.is_set()
        next_read(agent, clock)
        assert agent.power.level == 4
        assert agent._stop.is_set()  # run_forever's loop ends: stop, then power off
    finally:
        agent.stop()
    assert not marker.exists()  # nothing runs before the clean stop has finished
    agent._power_off()
    assert marker.exists()
    state = load_report(settings.storage.data_dir)
    assert state is not None and state.shed_level == 4


def test_a_failing_shutdown_command_is_one_log_line(tmp_path, clock, caplog):
    settings = battery_trap(tmp_path, 50, battery={"shutdown_command": ["/nonexistent/poweroff"]})
    agent = Agent(settings, timer=clock)
    agent.power_off_command = list(settings.battery.shutdown_command)
    agent._power_off()
    assert "/nonexistent/poweroff failed" in caplog.text


def test_an_absent_gauge_stops_the_agent_at_start_naming_the_path(tmp_path):
    from device.hardware import HardwareUnavailable

    settings = trap_settings(
        tmp_path, battery={"gauge": "sysfs", "sysfs_root": str(tmp_path / "none-here")}
    )
    with pytest.raises(HardwareUnavailable, match="none-here"):
        Agent(settings)


class NoEffects:
    def send_blank_media(self, allowed: bool) -> None: ...
    def classify(self, allowed: bool) -> None: ...
    def timelapse(self, allowed: bool) -> None: ...
    def shut_down(self) -> None: ...


def test_a_long_gap_between_windows_writes_the_controller_schedule_and_asks_to_halt(
    tmp_path, clock
):
    schedule = tmp_path / "wake-schedule.json"
    settings = trap_settings(
        tmp_path,
        device={"timezone": "UTC"},
        power={"profile": "scheduled", "capture_windows": ["18:00-06:00"]},
        wake={"mode": "controller", "controller_file": str(schedule)},
        # Without sync windows the trap stays reachable at any time, so it never sleeps.
        uplink={"transport": "none", "sync_windows": ["18:00-18:30"]},
    )
    plans: list[SleepPlan] = []
    synced = [False]
    room = PowerRoom(
        settings,
        EnergyCounters(clock=clock.monotonic),
        effects=NoEffects(),
        radio_on=lambda: True,
        clock_synced=lambda: synced[0],
        on_sleep=plans.append,
        clock=clock,
        now=lambda: datetime(2026, 12, 2, 9, 0, tzinfo=UTC),
    )
    room.start()
    try:
        clock.run_until(lambda: room.monitor.reads >= 1)
        # Started: the schedule says "no halt planned"; an unsynced clock never sleeps.
        assert plans == [] and json.loads(schedule.read_text())["on_at"] is None
        synced[0] = True
        reads = room.monitor.reads
        clock.advance(settings.battery.poll_interval_s)
        clock.run_until(lambda: room.monitor.reads > reads)
    finally:
        room.stop()
    [plan] = plans
    assert plan.opens_at == datetime(2026, 12, 2, 18, 0, tzinfo=UTC)
    assert plan.wake_at < plan.opens_at
    written = json.loads(schedule.read_text())
    assert datetime.fromisoformat(written["on_at"]) == plan.wake_at


def test_camtrap_energy_reads_the_counters_the_agent_left(tmp_path, clock):
    settings = battery_trap(tmp_path, 64, power={"board": "zero2w", "battery_wh": 50})
    agent = Agent(settings, timer=clock)
    agent.start()
    try:
        clock.run_until(lambda: agent.power.monitor.reads >= 1)
        agent.capture.trigger("test")
        clock.run_until(agent.capture.is_idle)
        clock.advance(3600)
    finally:
        agent.stop()
    config = tmp_path / "camtrap.toml"
    config.write_text(
        f'[storage]\ndata_dir = "{settings.storage.data_dir}"\n'
        '[power]\nboard = "zero2w"\nbattery_wh = 50\n'
    )
    out = subprocess.run(
        [sys.executable, "-m", "device.cli", "--config", str(config), "energy", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    budget = json.loads(out.stdout)
    assert budget["board"] == "zero2w"
    assert budget["battery_pct"] == 64
    assert budget["days_left"] < budget["days_full"]
    state = load_report(settings.storage.data_dir)
    assert state is not None and state.counters.captures == settings.capture.burst_frames
    assert state.counters.uptime_s >= 3600
