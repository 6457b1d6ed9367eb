"""Capture: PIR edges on gpiozero's MockFactory pins become bursts; nothing is dropped."""

from __future__ import annotations

import threading
import time

import pytest

from device.agent import Agent
from device.capture.loop import CaptureLoop
from device.capture.types import CapturedFrame, EventClosed
from device.clock import ClockProbe
from device.hardware.camera_replay import ReplayCamera
from device.store.db import open_readonly
from device.store.store import DB_NAME
from tests.support.world import trap_settings, write_jpegs


class Recorder:
    """A sink that keeps what capture hands over, optionally slow like a dying SD card."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.items: list[CapturedFrame | EventClosed] = []
        self.delay_s = delay_s
        self.lock = threading.Lock()

    def __call__(self, item: CapturedFrame | EventClosed) -> None:
        with self.lock:
            self.items.append(item)

    def frames(self) -> list[CapturedFrame]:
        return [i for i in self.items if isinstance(i, CapturedFrame)]

    def events(self) -> list[EventClosed]:
        return [i for i in self.items if isinstance(i, EventClosed)]


@pytest.fixture
def loop_world(tmp_path, mock_pins):
    settings = trap_settings(
        tmp_path, camera={"backend": "replay", "replay_dir": tmp_path / "frames"}
    )
    write_jpegs(tmp_path / "frames", 4)
    camera = ReplayCamera(tmp_path / "frames", (80, 60))
    camera.start()
    sink = Recorder()
    loop = CaptureLoop(settings, camera, sink, ClockProbe(settings.clock))
    loop.start()
    yield settings, loop, sink
    loop.stop(timeout=10)


def test_a_trigger_starts_a_burst_of_n_frames_in_one_event(loop_world):
    settings, loop, sink = loop_world
    loop.trigger("pir")
    assert loop.wait_idle(10)
    frames = sink.frames()
    assert len(frames) == settings.capture.burst_frames
    assert len({f.event_id for f in frames}) == 1
    assert len({f.media_id for f in frames}) == len(frames)
    assert [f.seq for f in frames] == list(range(len(frames)))
    assert all(f.capture_method == "activityDetection" for f in frames)
    (closed,) = sink.events()
    assert closed.event_id == frames[0].event_id and closed.frame_count == len(frames)


def test_retriggers_extend_a_burst_up_to_the_maximum(loop_world):
    settings, loop, sink = loop_world
    stop = threading.Event()

    def keep_triggering() -> None:
        while not stop.is_set():
            loop.trigger("pir")
            time.sleep(settings.capture.burst_interval_s / 2)

    t = threading.Thread(target=keep_triggering)
    loop.trigger("pir")
    t.start()
    time.sleep(settings.capture.burst_interval_s * (settings.capture.max_burst_frames + 4))
    stop.set()
    t.join()
    assert loop.wait_idle(10)
    first_event = sink.frames()[0].event_id
    in_first = [f for f in sink.frames() if f.event_id == first_event]
    assert len(in_first) == settings.capture.max_burst_frames
    assert loop.stats.retriggers > 0


def test_triggers_in_the_cooldown_are_counted_not_lost(tmp_path, mock_pins):
    settings = trap_settings(tmp_path, capture={"cooldown_s": 30.0})
    write_jpegs(tmp_path / "frames", 2)
    camera = ReplayCamera(tmp_path / "frames", (80, 60))
    sink = Recorder()
    loop = CaptureLoop(settings, camera, sink, ClockProbe(settings.clock))
    loop.start()
    try:
        loop.trigger()
        assert loop.wait_idle(10)
        loop.trigger()
        loop.trigger()
        assert loop.wait_idle(10)
        assert loop.stats.events == 1
        assert loop.stats.triggers == 3 and loop.stats.suppressed == 2
    finally:
        loop.stop(10)


def test_timelapse_frames_are_single_frame_timelapse_events(loop_world):
    _, loop, sink = loop_world
    loop.timelapse_now()
    assert loop.wait_idle(10)
    (frame,) = sink.frames()
    assert frame.capture_method == "timeLapse" and frame.trigger_source == "timelapse"


def test_timelapse_ticks_on_its_schedule(tmp_path, mock_pins):
    settings = trap_settings(tmp_path, capture={"timelapse_interval_s": 0.1})
    write_jpegs(tmp_path / "frames", 2)
    sink = Recorder()
    loop = CaptureLoop(
        settings, ReplayCamera(tmp_path / "frames", (80, 60)), sink, ClockProbe(settings.clock)
    )
    loop.start()
    time.sleep(0.55)
    loop.stop(10)
    assert len(sink.frames()) >= 3
    assert all(f.capture_method == "timeLapse" for f in sink.frames())


def test_a_pir_edge_on_a_mock_pin_is_captured_by_the_agent(tmp_path, mock_pins):
    settings = trap_settings(tmp_path)
    agent = Agent(settings)
    agent.start()
    try:
        pin = agent.pir.mock_pin()
        for _ in range(3):
            pin.drive_high()
            time.sleep(0.05)
            pin.drive_low()
            assert agent.capture.wait_idle(10)
            time.sleep(settings.capture.cooldown_s + 0.02)
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


def test_capture_never_waits_for_a_slow_store(tmp_path, mock_pins):
    """A store that takes 0.3 s per commit must not slow the burst or lose triggers."""
    settings = trap_settings(tmp_path)
    agent = Agent(settings)
    real_commit = agent.store.commit

    def slow_commit(items):
        time.sleep(0.3)
        return real_commit(items)

    agent.store.commit = slow_commit  # type: ignore[method-assign]
    agent.start()
    try:
        for _ in range(4):
            agent.capture.trigger("pir")
            assert agent.capture.wait_idle(10)
            time.sleep(settings.capture.cooldown_s + 0.02)
        captured = agent.capture.stats.frames
        queued = agent.writer.queue.qsize()
    finally:
        agent.stop()
    assert captured == 12
    assert queued > 0, "the store was slower than capture, so frames must have queued"
    assert agent.writer.stats.stored == 12


def test_sigterm_style_stop_finishes_the_burst_in_progress(tmp_path, mock_pins):
    settings = trap_settings(
        tmp_path, capture={"burst_frames": 50, "max_burst_frames": 50, "burst_interval_s": 0.01}
    )
    agent = Agent(settings)
    agent.start()
    agent.capture.trigger("pir")
    time.sleep(0.1)
    agent.stop()
    conn = open_readonly(settings.storage.data_dir / DB_NAME)
    try:
        media = conn.execute("SELECT COUNT(*) FROM media").fetchone()[0]
        (state, count) = conn.execute("SELECT state, frame_count FROM events").fetchone()
    finally:
        conn.close()
    assert 0 < media < 50
    assert state == "closed" and count == media
