"""CPU seconds by room: real threads burn real CPU, the kernel's per-thread counters say whose."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from gpiozero import Device, MotionSensor
from gpiozero.pins.mock import MockFactory

from device.power.cpu import ROOMS, cpu_by_room, process_cpu_s, room_of

pytestmark = pytest.mark.timeout(60)

BURN_S = 0.3


def burn(seconds: float) -> None:
    """Spin until this thread has used ``seconds`` of CPU (its own clock, not the wall)."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


@contextmanager
def busy_thread(name: str, seconds: float) -> Iterator[threading.Thread]:
    """A live thread called ``name`` that has used ``seconds`` of CPU and now waits."""
    burnt, release = threading.Event(), threading.Event()

    def work() -> None:
        burn(seconds)
        burnt.set()
        release.wait(30)

    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    assert burnt.wait(30)
    try:
        yield thread
    finally:
        release.set()
        thread.join(10)


def test_every_room_is_reported_and_they_add_up_to_the_process_total():
    rooms = cpu_by_room()
    assert set(rooms) == set(ROOMS)
    assert all(value >= 0 for value in rooms.values())
    # Read just after: the process total can only have grown.
    assert sum(rooms.values()) <= process_cpu_s() + 0.02


def test_a_busy_vision_thread_is_counted_in_vision_and_an_idle_store_thread_stays_near_zero():
    with busy_thread("vision", BURN_S), busy_thread("store-writer", 0.0):
        rooms = cpu_by_room()
    # Clock ticks are 10 ms: allow two of them either way.
    assert rooms["vision"] == pytest.approx(BURN_S, abs=0.03)
    assert rooms["store"] < 0.03


def test_a_thread_that_has_ended_moves_to_other_and_the_sum_holds():
    before = cpu_by_room()
    with busy_thread("capture", BURN_S) as thread:
        during = cpu_by_room()
    thread.join()
    after = cpu_by_room()
    assert during["capture"] - before["capture"] == pytest.approx(BURN_S, abs=0.03)
    # Gone from /proc, still in the process: its seconds now count as "other".
    assert after["capture"] == pytest.approx(before["capture"], abs=0.03)
    assert after["other"] - before["other"] >= BURN_S - 0.05


def test_a_thread_with_an_unknown_name_counts_as_other():
    before = cpu_by_room()
    with busy_thread("somebody-elses-pool", BURN_S):
        rooms = cpu_by_room()
    assert rooms["other"] - before["other"] >= BURN_S - 0.05
    assert sum(rooms.values()) == pytest.approx(process_cpu_s(), abs=0.05)


@pytest.mark.parametrize(
    ("name", "room"),
    [
        ("MainThread", "main"),
        ("capture", "capture"),
        ("store-writer", "store"),
        ("vision", "vision"),
        ("uplink-drain", "uplink"),
        ("paho-mqtt-client-trap-01", "uplink"),
        ("import", "import"),
        ("ota-poll", "ota"),
        ("ota-report-flush", "ota"),
        ("power-battery", "power"),
        ("radio-switch", "power"),
    ],
)
def test_thread_names_of_the_agent_and_its_libraries_map_to_rooms(name, room):
    assert room_of(threading.Thread(name=name)) == room


def test_gpiozeros_unnamed_pir_sampling_thread_counts_for_capture():
    Device.pin_factory = MockFactory()
    try:
        pir = MotionSensor(17, queue_len=1, sample_rate=50)
        try:
            queue_threads = [t for t in threading.enumerate() if type(t).__name__ == "GPIOQueue"]
            assert queue_threads, "MotionSensor starts its sampling thread"
            assert queue_threads[0].name.startswith("Thread-")  # gpiozero names it nothing
            assert room_of(queue_threads[0]) == "capture"
        finally:
            pir.close()
    finally:
        Device.pin_factory.reset()
        Device.pin_factory = None


def test_without_proc_every_second_is_other(tmp_path):
    rooms = cpu_by_room(proc=tmp_path / "no-proc")
    assert rooms["other"] == pytest.approx(process_cpu_s(), abs=0.02)
    assert all(value == 0 for room, value in rooms.items() if room != "other")
