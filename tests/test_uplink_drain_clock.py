"""The drain loop on a fake clock and a fake link: its timing, tested without sleeping.

Each test builds a real store (files, rows, outbox) and drives ``Drain.step`` by hand; the
link (``FakeLink``) answers only when the test says so, and time moves only when the test
moves the clock.
"""

from __future__ import annotations

import pytest

from device.protocol import CaptureMeta
from device.store.outbox import Outbox
from device.store.vocabulary import ItemKind, OutboxState, item_id_for
from device.uplink.drain import FLUSH_INTERVAL_S, IDLE_POLL_S, UNREADY_DELAY_S, Drain
from device.uplink.transport import PayloadTooLarge
from tests.support.clock import ManualClock
from tests.support.trap_db import open_store, queue_captures
from tests.support.uplink import FakeLink
from tests.support.world import trap_settings

DEVICE = "test-trap"
WALL_START = 1_900_000_000.0  # unix time the fake wall clock starts at (later than any commit)
ACK_TIMEOUT_S = 60.0


class Clocks:
    """The drain's two clocks, moved together: monotonic time, and wall time beside it."""

    def __init__(self) -> None:
        self.mono = ManualClock(start=0.0)

    def wall(self) -> float:
        return WALL_START + self.mono.monotonic()

    def advance(self, seconds: float) -> None:
        self.mono.advance(seconds)


@pytest.fixture
def trap(tmp_path):
    store = open_store(trap_settings(tmp_path / "trap"))
    yield store
    store.close()


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


def make_drain(store, link: FakeLink, clocks: Clocks, **kwargs) -> Drain:  # type: ignore[no-untyped-def]
    return Drain(
        store.db,
        link,
        data_dir=store.data_dir,
        device_id=DEVICE,
        vision=kwargs.pop("vision", False),
        ack_timeout_s=ACK_TIMEOUT_S,
        clock=clocks.mono,
        wall_clock=clocks.wall,
        **kwargs,
    )


def states(store) -> dict[str, str]:  # type: ignore[no-untyped-def]
    with store.db.read() as conn:
        return dict(conn.execute("SELECT item_id, state FROM outbox").fetchall())


def settle(drain: Drain, clocks: Clocks, steps: int = 5) -> None:
    """A few rounds, each a flush interval apart (what a real second or so would do)."""
    for _ in range(steps):
        clocks.advance(FLUSH_INTERVAL_S)
        drain.step()


def test_an_item_is_done_only_after_its_complete_and_flushed_on_the_flush_interval(trap, clocks):
    [burst] = queue_captures(trap, 1, frames=1)
    meta = item_id_for(ItemKind.METADATA, burst.event_id)
    link = FakeLink(DEVICE)
    drain = make_drain(trap, link, clocks)
    drain.step()
    assert link.item_ids_sent() == [meta], "the frame waits until its metadata is acknowledged"
    assert states(trap)[meta] == OutboxState.INFLIGHT
    link.answer_all()
    drain.step()  # the ack is in, but the flush interval has not passed yet
    assert states(trap)[meta] == OutboxState.INFLIGHT
    clocks.advance(FLUSH_INTERVAL_S)
    drain.step()
    assert states(trap)[meta] == OutboxState.DONE
    link.answer_all()  # the frame went as soon as its metadata was acknowledged
    settle(drain, clocks)
    assert set(states(trap).values()) == {OutboxState.DONE}
    assert drain.idle()


def test_an_item_unanswered_for_the_ack_timeout_is_retried_with_backoff(trap, clocks):
    [burst] = queue_captures(trap, 1, frames=1)
    meta = item_id_for(ItemKind.METADATA, burst.event_id)
    link = FakeLink(DEVICE)
    drain = make_drain(trap, link, clocks)
    drain.step()
    clocks.advance(ACK_TIMEOUT_S - 1)
    drain.step()
    assert meta in drain.window, "not yet: the timeout has not passed"
    clocks.advance(2)
    drain.step()
    assert meta not in drain.window and drain.progress.retries == 1
    with trap.db.read() as conn:
        attempts, due, error = conn.execute(
            "SELECT attempts, next_attempt_at, last_error FROM outbox WHERE item_id = ?", (meta,)
        ).fetchone()
    assert attempts == 1 and error == f"no ack within {ACK_TIMEOUT_S:g} s"
    assert 2.5 <= due - clocks.wall() <= 7.5, "the first backoff is 5 s, plus or minus 50 %"
    assert states(trap)[meta] == OutboxState.PENDING
    clocks.advance(due - clocks.wall() + IDLE_POLL_S)
    drain.step()
    assert link.item_ids_sent() == [meta, meta], "sent again once its backoff passed"


def test_metadata_of_an_unclassified_event_waits_and_is_claimed_again_once_due(trap, clocks):
    [burst] = queue_captures(trap, 1, frames=1)
    meta = item_id_for(ItemKind.METADATA, burst.event_id)
    media = item_id_for(ItemKind.MEDIA, burst.media_ids[0])
    link = FakeLink(DEVICE)
    drain = make_drain(trap, link, clocks, vision=True)
    drain.step()
    assert states(trap) == {
        meta: OutboxState.WAITING_CLASSIFICATION,
        media: OutboxState.WAITING_METADATA,
    }
    assert link.sent == []
    box = Outbox(trap.db)
    assert box.depth() == {"metadata": 1, "media": 1}, "waiting items are still queued"
    assert box.left()[0] == 2
    clocks.advance(UNREADY_DELAY_S - 1)
    drain.wake()
    drain.step()
    assert link.sent == [], "not before its delay has passed"
    clocks.advance(1 + IDLE_POLL_S)
    drain.step()
    assert set(states(trap).values()) == {
        OutboxState.WAITING_CLASSIFICATION,
        OutboxState.WAITING_METADATA,
    }, "claimed, still unready"
    assert drain.progress.items_dead == 0


def test_idle_once_every_item_is_done_even_if_an_ack_is_repeated_after_a_resend(trap, clocks):
    """The known bug: ``idle()`` stayed False with every row done.

    A "complete" that arrives while its item is back in the outbox (here: its ack timed
    out, then ingest answered late) is counted before the flush. If the item is claimed and
    sent again before that flush (a sync asked for everything now), ingest's second
    "complete" was taken for a duplicate and dropped without ending the new flight: the
    flight, and every file waiting on it, sat in the window until the ack timeout.
    """
    [burst] = queue_captures(trap, 1, frames=1)
    meta = item_id_for(ItemKind.METADATA, burst.event_id)
    link = FakeLink(DEVICE)
    drain = make_drain(trap, link, clocks)
    drain.step()  # metadata sent; ingest is slow
    clocks.advance(ACK_TIMEOUT_S + 1)
    drain.step()  # no ack in time: back to the outbox with a backoff
    link.answer_all()  # ... and now ingest's answer arrives
    drain.step()
    Outbox(trap.db).due_now()  # `camtrap sync`: everything queued goes now
    drain.wake()
    link.auto_ack = True  # ingest answers at once from now on (a duplicate: "complete")
    drain.step()
    assert link.item_ids_sent().count(meta) <= 2
    settle(drain, clocks)
    assert set(states(trap).values()) == {OutboxState.DONE}
    assert not drain.window, "no flight is left waiting for an ack that came already"
    assert drain.idle()


def test_a_complete_for_an_item_back_in_the_outbox_spares_sending_it_again(trap, clocks):
    [burst] = queue_captures(trap, 1, frames=1)
    meta = item_id_for(ItemKind.METADATA, burst.event_id)
    link = FakeLink(DEVICE)
    drain = make_drain(trap, link, clocks)
    drain.step()
    clocks.advance(ACK_TIMEOUT_S + 1)
    drain.step()
    link.answer_all()
    drain.step()  # the late complete is counted, not flushed yet
    Outbox(trap.db).due_now()
    drain.wake()
    drain.step()  # claimed again, and not sent: ingest has it (its frame may go now)
    assert link.item_ids_sent().count(meta) == 1
    link.answer_all()
    settle(drain, clocks)
    assert set(states(trap).values()) == {OutboxState.DONE}
    assert drain.idle()


def test_files_waiting_on_metadata_that_no_longer_fits_the_link_go_back_and_wait(trap, clocks):
    """Metadata refused as too large for the link (its limit shrank since it was built) takes
    the files waiting on it out of the window, instead of leaving them there for good."""

    class ShrunkLink(FakeLink):
        def send(self, message):  # type: ignore[no-untyped-def]
            if isinstance(message, CaptureMeta):
                raise PayloadTooLarge(5000, 4000)
            return super().send(message)

    [burst] = queue_captures(trap, 1, frames=1)
    meta = item_id_for(ItemKind.METADATA, burst.event_id)
    media = item_id_for(ItemKind.MEDIA, burst.media_ids[0])
    link = ShrunkLink(DEVICE)
    drain = make_drain(trap, link, clocks)
    drain.step()
    assert link.sent == []
    assert not drain.window, "nothing waits in the window on an item that left it"
    assert states(trap) == {meta: OutboxState.PENDING, media: OutboxState.WAITING_METADATA}


def test_the_last_sync_stamp_comes_from_the_wall_clock(trap, clocks):
    from datetime import UTC, datetime

    from device.uplink.drain import last_sync_at

    queue_captures(trap, 1, frames=1)
    link = FakeLink(DEVICE, auto_ack=True)
    drain = make_drain(trap, link, clocks)
    settle(drain, clocks, steps=3)
    stamp = datetime.fromisoformat(last_sync_at(trap.db) or "")
    assert abs(stamp.timestamp() - clocks.wall()) <= 3 * FLUSH_INTERVAL_S
    assert stamp.tzinfo == UTC
