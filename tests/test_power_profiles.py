"""Power profiles: when the camera streams, what a trigger then costs, and what is counted.

- always-ready: the camera streams from start to stop; a trigger's first frame comes at once.
- low-power: the camera is stopped between events; a trigger starts it, the start shows in the
  first frame's latency (trigger and frame times are both kept), and the camera stays on
  camera_linger_s after the event before it stops.
- scheduled: the camera streams only inside the capture windows; outside, PIR edges are
  counted and not captured, and timelapse frames are taken only if asked.

A replay camera with a start delay stands in for a sensor's stream start; the delay passes on
the test's ManualClock, as do all of capture's intervals and the windows' wall time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from device.agent import Agent
from device.capture.loop import CaptureLoop
from device.capture.types import CapturedFrame
from device.clock import ClockProbe
from device.hardware.camera_replay import ReplayCamera
from device.power.camera_power import CameraPower
from device.power.counters import EnergyCounters
from device.store.db import open_readonly
from device.store.store import DB_NAME
from tests.support.clock import ManualClock
from tests.support.recorder import Recorder
from tests.support.world import trap_settings, write_jpegs

START_DELAY_S = 0.8  # what this test's "sensor" takes to start streaming
NOON = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


class Trap:
    """A capture loop on a replay camera whose start takes START_DELAY_S of fake time, its
    camera policy, its energy counters, and a wall clock that moves with the fake clock."""

    def __init__(self, tmp_path, clock: ManualClock, *, wall_start=NOON, **sections) -> None:
        self.clock = clock
        self._origin = clock.monotonic()
        self._wall_start = wall_start
        self.settings = trap_settings(
            tmp_path, camera={"backend": "replay", "replay_dir": tmp_path / "frames"}, **sections
        )
        write_jpegs(tmp_path / "frames", 4)
        self.camera = ReplayCamera(tmp_path / "frames", (80, 60))
        self.camera.start()  # the agent starts it, whatever the profile
        self.camera.start_delay_s = START_DELAY_S
        self.camera.sleep = clock.advance
        self.energy = EnergyCounters(clock=clock.monotonic)
        self.power = CameraPower(
            self.settings, self.camera, timer=clock, counters=self.energy, wall=self.wall
        )
        self.sink = Recorder()
        self.loop = CaptureLoop(
            self.settings,
            self.camera,
            self.sink,
            ClockProbe(self.settings.clock),
            timer=clock,
            power=self.power,
            counters=self.energy,
        )

    def wall(self) -> datetime:
        return self._wall_start + timedelta(seconds=self.clock.monotonic() - self._origin)

    def start(self) -> Trap:
        self.loop.start()
        self.clock.next_deadline()  # the loop has settled the camera and waits
        return self

    def stop(self) -> None:
        self.loop.stop(timeout=10)

    def burst(self, source: str = "pir") -> None:
        self.loop.trigger(source)  # type: ignore[arg-type]
        self.clock.run_until(self.loop.is_idle)

    def latency(self, frame: CapturedFrame) -> float:
        assert frame.trigger_mono is not None
        return frame.captured_mono - frame.trigger_mono


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def make_trap(tmp_path, clock):
    traps: list[Trap] = []

    def make(**sections) -> Trap:
        trap = Trap(tmp_path, clock, **sections).start()
        traps.append(trap)
        return trap

    yield make
    for trap in traps:
        trap.stop()


def test_always_ready_streams_from_start_to_stop_and_answers_at_once(make_trap, clock):
    trap = make_trap(power={"profile": "always-ready"})
    started = clock.monotonic()
    for _ in range(3):
        trap.burst()
        clock.advance(30)
    assert trap.power.is_on and trap.power.starts == 0
    first_frames = [f for f in trap.sink.frames() if f.seq == 0]
    assert [trap.latency(f) for f in first_frames] == [0.0, 0.0, 0.0]
    assert trap.energy.snapshot().camera_on_s == pytest.approx(clock.monotonic() - started)


def test_low_power_starts_the_camera_on_the_trigger_and_the_latency_shows(make_trap, clock):
    trap = make_trap(power={"profile": "low-power", "camera_linger_s": 10})
    assert not trap.power.is_on, "the camera the agent started stops when the loop runs"
    trap.burst()
    frames = trap.sink.frames()
    assert len(frames) == trap.settings.capture.burst_frames
    assert trap.latency(frames[0]) == pytest.approx(START_DELAY_S)
    assert trap.power.is_on, "it lingers for a retrigger"
    assert trap.power.starts == 1


def test_low_power_lingers_then_stops_and_a_retrigger_in_the_linger_costs_no_start(
    make_trap, clock
):
    trap = make_trap(power={"profile": "low-power", "camera_linger_s": 10})
    trap.burst()
    clock.advance(5)  # inside the linger, past the cooldown
    trap.burst()
    second = [f for f in trap.sink.frames() if f.seq == 0][1]
    assert trap.latency(second) == 0.0 and trap.power.starts == 1
    linger_from = clock.monotonic()
    assert clock.next_deadline() == pytest.approx(linger_from + 10), "it wakes at the linger end"
    clock.run_until(lambda: not trap.power.is_on)
    assert clock.monotonic() == pytest.approx(linger_from + 10)
    # Camera-on time: the start, two bursts with the 5 s between them, and one linger.
    burst_s = 2 * trap.settings.capture.burst_interval_s
    on_s = trap.energy.snapshot().camera_on_s
    assert on_s == pytest.approx(START_DELAY_S + burst_s + 5 + burst_s + 10)


def test_every_frame_handed_on_counts_as_a_capture(make_trap):
    trap = make_trap(power={"profile": "low-power"})
    trap.burst()
    trap.loop.timelapse_now()
    trap.clock.run_until(trap.loop.is_idle)
    assert trap.energy.snapshot().captures == len(trap.sink.frames()) == 4


def test_scheduled_counts_pir_edges_outside_the_windows_and_captures_none(make_trap, clock):
    trap = make_trap(power={"profile": "scheduled", "capture_windows": ["18:00-06:00"]})
    assert not trap.power.is_on, "noon is outside 18:00-06:00"
    trap.burst()
    trap.burst()
    assert trap.sink.frames() == []
    assert trap.loop.stats.outside_window == 2 and trap.loop.stats.triggers == 2


def test_scheduled_streams_inside_the_window_from_its_first_edge(make_trap, clock):
    trap = make_trap(power={"profile": "scheduled", "capture_windows": ["18:00-06:00"]})
    clock.run_until(lambda: trap.power.is_on, timeout=30)
    edge = datetime(2026, 6, 1, 18, 0, tzinfo=UTC)
    assert (trap.wall() - edge).total_seconds() == pytest.approx(START_DELAY_S), "at the edge"
    trap.burst()
    assert trap.latency(trap.sink.frames()[0]) == 0.0, "inside the window it streams"
    clock.run_until(lambda: not trap.power.is_on, timeout=30)
    assert trap.wall() == datetime(2026, 6, 2, 6, 0, tzinfo=UTC), "stopped at the window's end"


def test_a_test_capture_outside_the_windows_is_taken(make_trap):
    trap = make_trap(power={"profile": "scheduled", "capture_windows": ["18:00-06:00"]})
    trap.burst("test")
    assert len(trap.sink.frames()) == trap.settings.capture.burst_frames
    assert trap.loop.stats.outside_window == 0


@pytest.mark.parametrize("outside", [False, True])
def test_scheduled_timelapse_outside_the_windows_only_if_asked(make_trap, outside):
    trap = make_trap(
        power={
            "profile": "scheduled",
            "capture_windows": ["18:00-06:00"],
            "timelapse_outside_windows": outside,
            "camera_linger_s": 10,
        }
    )
    trap.loop.timelapse_now()
    trap.clock.run_until(trap.loop.is_idle)
    assert len(trap.sink.frames()) == (1 if outside else 0)
    assert trap.loop.stats.timelapse_skipped == (0 if outside else 1)
    assert trap.power.starts == (1 if outside else 0)
    assert not trap.power.is_on, "the camera started for the frame stops right after it"


def test_suspended_timelapse_skips_frames_and_resumes_on_its_schedule(make_trap, clock):
    trap = make_trap(capture={"timelapse_interval_s": 100})
    trap.loop.suspend_timelapse(True)
    clock.advance(100)
    clock.run_until(lambda: trap.loop.stats.timelapse_skipped == 1)
    assert trap.sink.frames() == [] and trap.loop.timelapse_suspended
    trap.loop.suspend_timelapse(False)
    clock.run_until(lambda: len(trap.sink.frames()) == 1)
    (frame,) = trap.sink.frames()
    assert frame.capture_method == "timeLapse"


def test_a_remote_profile_change_applies_at_the_next_wake(make_trap, clock):
    trap = make_trap(power={"profile": "always-ready"})
    trap.settings.power.profile = "low-power"
    trap.loop.config_changed()
    clock.run_until(lambda: not trap.power.is_on)
    trap.settings.power.profile = "always-ready"
    trap.loop.config_changed()
    clock.run_until(lambda: trap.power.is_on)
    assert trap.power.starts == 1


def test_the_agent_in_low_power_captures_a_pir_edge_and_counts_the_camera(tmp_path, clock):
    settings = trap_settings(tmp_path, power={"profile": "low-power", "camera_linger_s": 10})
    agent = Agent(settings, timer=clock)
    agent.start()
    try:
        clock.run_until(lambda: not agent.camera_power.is_on)
        assert agent.pir is not None
        agent.pir.mock_pin().drive_high()
        clock.run_until(lambda: agent.capture.stats.events == 1)
        clock.run_until(agent.capture.is_idle)
        agent.pir.mock_pin().drive_low()
        clock.run_until(lambda: not agent.camera_power.is_on)
    finally:
        agent.stop()
    snapshot = agent.energy.snapshot()
    assert snapshot.captures == settings.capture.burst_frames
    assert agent.camera_power.starts == 1
    conn = open_readonly(settings.storage.data_dir / DB_NAME)
    try:
        assert conn.execute("SELECT COUNT(*) FROM media WHERE state='stored'").fetchone()[0] == 3
    finally:
        conn.close()


def closed_window_now() -> str:
    """A window that opens two hours from now (UTC) and closes an hour later."""
    now = datetime.now(UTC)
    start, end = now + timedelta(hours=2), now + timedelta(hours=3)
    return f"{start:%H:%M}-{end:%H:%M}"


@pytest.mark.parametrize(
    ("power", "events", "outside"),
    [
        ({"profile": "always-ready"}, 2, 0),
        ({"profile": "low-power", "camera_linger_s": 0}, 2, 0),
        ({"profile": "scheduled", "capture_windows": ["00:00-12:00", "12:00-00:00"]}, 2, 0),
        ({"profile": "scheduled", "capture_windows": [closed_window_now()]}, 0, 2),
    ],
)
def test_each_profile_works_in_simulation(tmp_path, power, events, outside):
    from device.simulate import SimulationPlan, run_simulation

    settings = trap_settings(tmp_path, power=power)
    plan = SimulationPlan(triggers=2, data_dir=tmp_path / "sim", timelapse=False)
    result = run_simulation(settings, plan)
    assert result.stats["events"] == events
    assert result.power["profile"] == power["profile"]
    assert result.power["outside_window"] == outside
    assert result.power["captures"] == result.stats["media"]
    if power["profile"] == "low-power":
        assert result.power["camera_starts"] == 2, "one start per event, no linger"
        assert result.power["camera_on_s"] < result.power["uptime_s"]
