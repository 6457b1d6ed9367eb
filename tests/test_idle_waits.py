"""The agent sleeps when it has nothing to do: its idle threads block instead of polling.

The capture loop's waits run on a ManualClock that records every timed wait the loop makes,
so an idle hour of fake time shows exactly how often the loop woke.
"""

from __future__ import annotations

import threading

import pytest

from device.capture.loop import MAX_IDLE_WAIT_S, CaptureLoop
from device.clock import ClockProbe
from device.hardware.camera_replay import ReplayCamera
from device.store.store import MediaStore
from device.store.writer import StoreWriter
from tests.support.clock import ManualClock
from tests.support.world import trap_settings, write_jpegs

HOUR = 3600.0


class CountingClock(ManualClock):
    """A ManualClock that counts the timed waits made on it (each one is a wake-up later)."""

    def __init__(self) -> None:
        super().__init__()
        self.timed_waits = 0

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        if timeout is not None:
            with self._cond:
                self.timed_waits += 1
        return super().wait(event, timeout)


class RecordingIr:
    """An auto IR light that only records what it was asked to decide on."""

    is_on = False

    def __init__(self) -> None:
        self.updates: list[float | None] = []

    def update(self, lores_mean, now) -> bool:
        self.updates.append(lores_mean)
        return False

    def close(self) -> None:
        pass


@pytest.fixture
def clock() -> CountingClock:
    return CountingClock()


def idle_loop(tmp_path, clock, light=None, **sections) -> CaptureLoop:
    settings = trap_settings(
        tmp_path, camera={"backend": "replay", "replay_dir": tmp_path / "frames"}, **sections
    )
    write_jpegs(tmp_path / "frames", 2)
    camera = ReplayCamera(tmp_path / "frames", (80, 60))
    camera.start()
    loop = CaptureLoop(
        settings, camera, lambda item: None, ClockProbe(settings.clock), light, timer=clock
    )
    loop.start()
    return loop


def idle_for(clock: CountingClock, seconds: float) -> None:
    until = clock.monotonic() + seconds
    clock.run_until(lambda: clock.monotonic() >= until, timeout=30)


def test_an_idle_capture_loop_wakes_once_a_minute_not_every_second(tmp_path, clock):
    loop = idle_loop(tmp_path, clock)
    try:
        now = clock.monotonic()
        assert clock.next_deadline() - now == pytest.approx(MAX_IDLE_WAIT_S)
        before = clock.timed_waits
        idle_for(clock, HOUR)
        assert clock.timed_waits - before <= HOUR / MAX_IDLE_WAIT_S + 1
    finally:
        loop.stop(10)


def test_a_due_timelapse_frame_is_waited_for_not_polled(tmp_path, clock):
    loop = idle_loop(tmp_path, clock, capture={"timelapse_interval_s": 20})
    try:
        now = clock.monotonic()
        assert clock.next_deadline() - now == pytest.approx(20)
    finally:
        loop.stop(10)


def test_a_remote_timelapse_interval_takes_effect_within_the_ceiling(tmp_path, clock):
    loop = idle_loop(tmp_path, clock)  # timelapse off
    try:
        changed_at = clock.monotonic()
        loop.settings.capture.timelapse_interval_s = 300  # remote config, nobody told the loop
        clock.run_until(lambda: loop.stats.events == 1, timeout=30)
        assert clock.monotonic() - changed_at <= MAX_IDLE_WAIT_S + 300
    finally:
        loop.stop(10)


def test_a_signalled_config_change_is_seen_at_once(tmp_path, clock):
    loop = idle_loop(tmp_path, clock)
    try:
        clock.next_deadline()
        changed_at = clock.monotonic()
        loop.settings.capture.timelapse_interval_s = 300
        loop.config_changed()
        clock.run_until(lambda: loop.stats.events == 1, timeout=30)
        assert clock.monotonic() - changed_at == pytest.approx(300)
    finally:
        loop.stop(10)


def test_lores_analysis_runs_every_interval_for_an_auto_ir_light(tmp_path, clock):
    ir = RecordingIr()
    loop = idle_loop(
        tmp_path,
        clock,
        ir,
        ir={"pin": 5, "mode": "auto"},
        power={"profile": "always-ready", "analysis_interval_s": 600},
    )
    started = clock.monotonic()
    try:
        clock.run_until(lambda: loop.stats.analyses == 6, timeout=30)
        assert clock.monotonic() - started == pytest.approx(HOUR), "one each 600 s"
    finally:
        loop.stop(10)
    assert len(ir.updates) == 6 and all(mean is not None for mean in ir.updates)


@pytest.mark.parametrize(
    ("ir", "power"),
    [
        ({"pin": 5, "mode": "auto"}, {"analysis_interval_s": 0}),  # turned off
        ({"pin": 5, "mode": "auto"}, {"profile": "low-power"}),  # the camera is off
        ({"pin": 5, "mode": "schedule"}, {}),  # the light needs no frame
        ({"pin": None}, {}),  # no light
    ],
)
def test_lores_analysis_runs_only_when_it_matters(tmp_path, clock, ir, power):
    loop = idle_loop(tmp_path, clock, RecordingIr(), ir=ir, power=power)
    try:
        idle_for(clock, HOUR)
    finally:
        loop.stop(10)
    assert loop.stats.analyses == 0


def test_a_healthy_store_writer_blocks_on_its_queue_and_a_spooling_one_probes(tmp_path):
    settings = trap_settings(tmp_path)
    store = MediaStore(settings)
    writer = StoreWriter(store, batch_max=4)
    store.open()
    try:
        assert store.db is not None
        assert writer.idle_wake_s is None, "no wake-up while the card works"
    finally:
        store.close()
    assert store.db is None
    assert writer.idle_wake_s == settings.storage.probe_interval_s
