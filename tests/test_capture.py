"""Capture: PIR edges on gpiozero's MockFactory pins become bursts; nothing is dropped.

Every interval (burst spacing, cooldown, timelapse) runs on a ``ManualClock``: the tests move
time instead of sleeping for it.
"""

from __future__ import annotations

import threading
from itertools import pairwise

import pytest

from device.agent import Agent
from device.capture.loop import CaptureLoop
from device.capture.types import CapturedFrame
from device.clock import ClockProbe
from device.hardware.camera_replay import ReplayCamera
from device.store.db import open_readonly
from device.store.store import DB_NAME
from tests.support.clock import ManualClock
from tests.support.recorder import Recorder
from tests.support.world import trap_settings, write_jpegs


def gaps(frames: list[CapturedFrame]) -> list[float]:
    return [b.captured_mono - a.captured_mono for a, b in pairwise(frames)]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def start_loop(tmp_path, clock: ManualClock, **capture: float) -> tuple:
    settings = trap_settings(
        tmp_path, camera={"backend": "replay", "replay_dir": tmp_path / "frames"}, capture=capture
    )
    write_jpegs(tmp_path / "frames", 4)
    camera = ReplayCamera(tmp_path / "frames", (80, 60))
    camera.start()
    sink = Recorder()
    loop = CaptureLoop(settings, camera, sink, ClockProbe(settings.clock), timer=clock)
    loop.start()
    return settings, loop, sink


@pytest.fixture
def loop_world(tmp_path, clock):
    settings, loop, sink = start_loop(tmp_path, clock)
    yield settings, loop, sink
    loop.stop(timeout=10)


def test_a_trigger_starts_a_burst_of_n_frames_in_one_event(loop_world, clock):
    settings, loop, sink = loop_world
    loop.trigger("pir")
    clock.run_until(loop.is_idle)
    frames = sink.frames()
    assert len(frames) == settings.capture.burst_frames
    assert len({f.event_id for f in frames}) == 1
    assert len({f.media_id for f in frames}) == len(frames)
    assert [f.seq for f in frames] == list(range(len(frames)))
    assert all(f.capture_method == "activityDetection" for f in frames)
    assert gaps(frames) == pytest.approx([settings.capture.burst_interval_s] * (len(frames) - 1))
    (closed,) = sink.events()
    assert closed.event_id == frames[0].event_id and closed.frame_count == len(frames)


def test_retriggers_extend_a_burst_up_to_the_maximum(loop_world, clock):
    settings, loop, sink = loop_world
    loop.trigger("pir")
    for _ in range(settings.capture.max_burst_frames + 4):
        clock.next_deadline()  # the loop waits out a burst interval (or idles after it)
        loop.trigger("pir")  # motion again, inside the interval
        clock.advance(settings.capture.burst_interval_s)
    clock.run_until(loop.is_idle)
    first_event = sink.frames()[0].event_id
    in_first = [f for f in sink.frames() if f.event_id == first_event]
    assert len(in_first) == settings.capture.max_burst_frames
    assert loop.stats.retriggers > 0


def test_triggers_in_the_cooldown_are_counted_not_lost(tmp_path, clock):
    settings, loop, _ = start_loop(tmp_path, clock, cooldown_s=30.0)
    try:
        loop.trigger()
        clock.run_until(loop.is_idle)
        loop.trigger()
        loop.trigger()
        clock.run_until(loop.is_idle)
        assert loop.stats.events == 1
        assert loop.stats.triggers == 3 and loop.stats.suppressed == 2
        clock.advance(settings.capture.cooldown_s)  # past the cooldown, a trigger bursts again
        loop.trigger()
        clock.run_until(loop.is_idle)
        assert loop.stats.events == 2 and loop.stats.suppressed == 2
    finally:
        loop.stop(10)


def test_timelapse_frames_are_single_frame_timelapse_events(loop_world, clock):
    _, loop, sink = loop_world
    loop.timelapse_now()
    clock.run_until(loop.is_idle)
    (frame,) = sink.frames()
    assert frame.capture_method == "timeLapse" and frame.trigger_source == "timelapse"


def test_timelapse_ticks_on_its_schedule(tmp_path, clock):
    started = clock.monotonic()
    settings, loop, sink = start_loop(tmp_path, clock, timelapse_interval_s=0.1)
    try:
        clock.run_until(lambda: len(sink.frames()) == 5)
    finally:
        loop.stop(10)
    frames = sink.frames()
    assert len(frames) == 5
    assert all(f.capture_method == "timeLapse" for f in frames)
    interval = settings.capture.timelapse_interval_s
    assert frames[0].captured_mono - started == pytest.approx(interval)
    assert gaps(frames) == pytest.approx([interval] * 4)


def test_a_pir_edge_on_a_mock_pin_is_captured_by_the_agent(tmp_path, clock):
    settings = trap_settings(tmp_path)
    agent = Agent(settings, timer=clock)
    agent.start()
    try:
        assert agent.pir is not None
        pin = agent.pir.mock_pin()  # the trap's own mock pin, not a global factory's
        for bursts in (1, 2, 3):
            pin.drive_high()
            clock.run_until(lambda n=bursts: agent.capture.stats.events == n)
            clock.run_until(agent.capture.is_idle)
            pin.drive_low()
            assert agent.pir.sensor.wait_for_no_motion(10)
            clock.advance(settings.capture.cooldown_s)
    finally:
        agent.stop()
    assert agent.capture.stats.triggers == 3
    conn = open_readonly(settings.storage.data_dir / DB_NAME)
    try:
        assert conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 3
        assert conn.execute("SELECT COUNT(*) FROM media WHERE state='stored'").fetchone()[0] == 9
        sources = {r[0] for r in conn.execute("SELECT trigger_source FROM media")}
        assert sources == {"pir"}
    finally:
        conn.close()


def test_capture_never_waits_for_a_slow_store(tmp_path, clock):
    """A store stuck in a commit must not slow the burst or lose triggers."""
    settings = trap_settings(tmp_path)
    agent = Agent(settings, timer=clock)
    real_commit = agent.store.commit
    store_free = threading.Event()

    def stuck_commit(items):
        store_free.wait(10)
        return real_commit(items)

    agent.store.commit = stuck_commit  # type: ignore[method-assign]
    agent.start()
    try:
        for _ in range(4):
            agent.capture.trigger("pir")
            clock.run_until(agent.capture.is_idle)
            clock.advance(settings.capture.cooldown_s)
        captured = agent.capture.stats.frames
        queued = agent.writer.queue.qsize()
    finally:
        store_free.set()
        agent.stop()
    assert captured == 12
    assert queued > 0, "the store was slower than capture, so frames must have queued"
    assert agent.writer.stats.stored == 12


def test_sigterm_style_stop_finishes_the_burst_in_progress(tmp_path, clock):
    settings = trap_settings(
        tmp_path, capture={"burst_frames": 50, "max_burst_frames": 50, "burst_interval_s": 0.01}
    )
    agent = Agent(settings, timer=clock)
    agent.start()
    agent.capture.trigger("pir")
    clock.run_until(lambda: agent.capture.stats.frames >= 5)
    taken = agent.capture.stats.frames  # the loop waits out an interval: no frame in progress
    agent.stop()
    conn = open_readonly(settings.storage.data_dir / DB_NAME)
    try:
        media = conn.execute("SELECT COUNT(*) FROM media").fetchone()[0]
        (state, count) = conn.execute("SELECT state, frame_count FROM events").fetchone()
    finally:
        conn.close()
    assert 0 < media < 50
    assert media == taken, "a stop ends the burst; it takes no further frame"
    assert state == "closed" and count == media
