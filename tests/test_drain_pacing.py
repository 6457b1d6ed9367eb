"""The drain on a slow link and at rest: ack deadlines start when a frame leaves, the byte
window follows the link's rate, and an idle drain sleeps until something is due.

A fake link and a fake clock (``tests.support``) stand in for the network, except where the
test is about a real transport's wait.
"""

from __future__ import annotations

import threading
import time

import pytest

from device.store.outbox import Outbox
from device.store.vocabulary import OutboxState
from device.uplink.drain import FLUSH_INTERVAL_S, IDLE_CEILING_S, Drain, Pacing
from device.uplink.mqtt import MqttTransport
from tests.support.clock import ManualClock
from tests.support.trap_db import open_store, queue_captures
from tests.support.uplink import FakeLink
from tests.support.world import trap_settings

DEVICE = "test-trap"
ACK_TIMEOUT_S = 60.0


class WaitRecordingLink(FakeLink):
    """A fake link that notes how long the drain asked to wait for an event."""

    def __init__(self, device_id: str, **kwargs: object) -> None:
        super().__init__(device_id, **kwargs)  # type: ignore[arg-type]
        self.waits: list[float | None] = []

    def next_event(self, timeout: float | None = None):  # type: ignore[no-untyped-def]
        self.waits.append(timeout)
        return super().next_event(timeout)


@pytest.fixture
def trap(tmp_path):  # type: ignore[no-untyped-def]
    store = open_store(trap_settings(tmp_path / "trap"))
    yield store
    store.close()


def make_drain(store, link, clock: ManualClock, **kwargs) -> Drain:  # type: ignore[no-untyped-def]
    return Drain(
        store.db,
        link,
        data_dir=store.data_dir,
        device_id=DEVICE,
        vision=False,
        ack_timeout_s=ACK_TIMEOUT_S,
        clock=clock,
        wall_clock=lambda: 1_900_000_000.0 + clock.monotonic(),
        **kwargs,
    )


def test_items_queued_behind_others_on_a_slow_link_are_not_timed_out(trap):  # type: ignore[no-untyped-def]
    # A window of one frame: each item waits for the one ahead of it, longer in all than the
    # ack timeout, yet none is retried, because its deadline starts when its frame goes out.
    queue_captures(trap, 3, frames=1)
    clock = ManualClock(start=0.0)
    link = FakeLink(DEVICE)
    drain = make_drain(trap, link, clock, window_bytes=1)
    drain.step()
    for _ in range(20):
        clock.advance(ACK_TIMEOUT_S * 0.75)
        link.answer_all()
        drain.step()
        drain.step()
    assert drain.progress.retries == 0
    assert drain.progress.items_done == 6
    clock.advance(FLUSH_INTERVAL_S)
    drain.step()
    assert set(Outbox(trap.db).depth().values()) <= {0}


def test_the_byte_window_grows_with_acks_and_stops_at_a_quarter_of_the_ack_timeout() -> None:
    pacing = Pacing(ceiling=32 * 1024 * 1024, ack_timeout_s=60.0)
    start = pacing.window
    pacing.on_acked(start)
    assert pacing.window == 2 * start, "each acknowledged byte lets one more in flight"
    # 32 KB/s of acks for two seconds (a satellite-class link).
    pacing.sample(0.0, busy=True)
    pacing.on_acked(32_000)
    pacing.sample(1.0, busy=True)
    assert pacing.rate == pytest.approx(32_000)
    assert pacing.window <= 32_000 * 60 * 0.25
    assert pacing.queue_s(64_000) == pytest.approx(2.0)


def test_idle_time_does_not_count_as_a_slow_link() -> None:
    pacing = Pacing(ceiling=1 << 25, ack_timeout_s=60.0)
    pacing.sample(0.0, busy=True)
    pacing.on_acked(1_000_000)
    pacing.sample(1.0, busy=True)
    pacing.sample(500.0, busy=False)  # nothing in flight for minutes
    pacing.sample(501.0, busy=True)
    pacing.on_acked(1_000_000)
    pacing.sample(502.0, busy=True)
    assert pacing.rate == pytest.approx(1_000_000)


def test_an_idle_online_drain_sleeps_until_the_ceiling_when_nothing_is_queued(trap):  # type: ignore[no-untyped-def]
    clock = ManualClock(start=0.0)
    link = WaitRecordingLink(DEVICE)
    drain = make_drain(trap, link, clock)
    drain.step()
    assert drain.idle()
    assert link.waits[-1] == pytest.approx(IDLE_CEILING_S)


def test_an_idle_drain_wakes_when_a_deferred_item_is_due(trap):  # type: ignore[no-untyped-def]
    queue_captures(trap, 1, frames=1)
    box = Outbox(trap.db, clock=lambda: 1_900_000_000.0)
    items = box.claim(10)
    box.defer([i.item_id for i in items], 30.0, OutboxState.WAITING_METADATA)
    clock = ManualClock(start=0.0)
    link = WaitRecordingLink(DEVICE)
    drain = make_drain(trap, link, clock)
    drain.step()
    assert link.sent == []
    assert link.waits[-1] == pytest.approx(30.0, abs=0.5)


def test_wake_ends_a_real_transports_wait_at_once(trap):  # type: ignore[no-untyped-def]
    # No broker needed: the wait is the transport's event queue, before any connect.
    link = MqttTransport(DEVICE, host="127.0.0.1", port=1, tls=False)
    drain = Drain(trap.db, link, data_dir=trap.data_dir, device_id=DEVICE, vision=False)
    returned = threading.Event()

    def wait() -> None:
        assert link.next_event(timeout=30.0) is None
        returned.set()

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.05)
    started = time.monotonic()
    drain.wake()
    assert returned.wait(5.0)
    assert time.monotonic() - started < 5.0
    waiter.join()
    assert link.drain_events() == [], "the wake-up is not an event"
