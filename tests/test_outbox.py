"""The outbox: most valuable first, retried with backoff, done only when ingest says so."""

from __future__ import annotations

import random

import pytest

from device.store.db import Database
from device.store.outbox import PRIORITY, Backoff, Outbox
from device.store.vocabulary import OutboxState


@pytest.fixture
def outbox(tmp_path):
    db = Database(tmp_path / "camtrap.db")
    box = Outbox(db, Backoff(base_s=10, cap_s=1000, jitter=0.5), seed=1)
    yield box
    db.close()


def fill(box: Outbox, items: list[tuple[str, str, str]]) -> None:
    with box.db.write() as conn:
        for kind, ref, prio in items:
            Outbox.enqueue(conn, kind, ref, PRIORITY[prio], 100)


def test_claims_come_most_valuable_first_then_oldest_first(outbox):
    fill(
        outbox,
        [
            ("media", "b1", "blank_media"),
            ("media", "a1", "media"),
            ("thumbnail", "t1", "thumbnail"),
            ("metadata", "e1", "metadata"),
            ("media", "a2", "media"),
            ("metadata", "e2", "metadata"),
        ],
    )
    order = [i.item_id for i in outbox.claim(10)]
    assert order == ["meta:e1", "meta:e2", "thumb:t1", "media:a1", "media:a2", "media:b1"]
    assert outbox.claim(10) == [], "claimed items are in flight, not claimable again"


def test_a_kind_filter_leaves_other_kinds_queued(outbox):
    fill(outbox, [("media", "a1", "media"), ("metadata", "e1", "metadata")])
    assert [i.kind for i in outbox.claim(10, kinds=["metadata"])] == ["metadata"]
    assert [i.kind for i in outbox.claim(10)] == ["media"]


def test_an_item_is_done_only_when_completed(outbox):
    fill(outbox, [("metadata", "e1", "metadata")])
    (item,) = outbox.claim(1)
    outbox.ack_chunks(item.item_id, 1)  # a chunk ack alone does not finish it
    outbox.recover_inflight()  # as after a crash
    (again,) = outbox.claim(1)
    assert again.item_id == item.item_id
    outbox.complete([item.item_id])
    outbox.recover_inflight()
    assert outbox.claim(1) == []
    assert outbox.depth() == {}


def test_failures_back_off_exponentially_with_jitter(outbox):
    fill(outbox, [("metadata", "e1", "metadata")])
    delays = []
    now = 1_000_000.0
    for _ in range(5):
        (item,) = outbox.claim(1, now=now + 10_000)
        delays.append(outbox.retry_later(item.item_id, "timeout", now=now))
    for attempt, delay in enumerate(delays, start=1):
        nominal = min(1000, 10 * 2 ** (attempt - 1))
        assert nominal * 0.5 <= delay <= nominal * 1.5
    assert outbox.claim(1, now=now) == [], "not due before its backoff expires"
    (item,) = outbox.claim(1, now=now + 2000)
    assert item.attempts == 5


def test_jitter_spreads_traps_that_failed_together():
    backoff = Backoff(base_s=60, cap_s=3600, jitter=0.5)
    delays = {round(backoff.delay(3, random.Random(seed)), 3) for seed in range(20)}
    assert len(delays) == 20 and min(delays) >= 120 and max(delays) <= 360


def test_chunk_acks_never_move_backwards_and_a_new_chunk_size_restarts(outbox):
    fill(outbox, [("media", "m1", "media")])
    (item,) = outbox.claim(1)
    outbox.set_chunking(item.item_id, 1000)
    outbox.ack_chunks(item.item_id, 3)
    outbox.ack_chunks(item.item_id, 2)
    outbox.release([item.item_id])
    (again,) = outbox.claim(1)
    assert (again.acked_chunks, again.chunk_size, again.attempts) == (3, 1000, 0)
    outbox.set_chunking(item.item_id, 1000)
    outbox.release([item.item_id])
    assert outbox.claim(1)[0].acked_chunks == 3
    outbox.set_chunking(item.item_id, 500)
    outbox.release([item.item_id])
    assert outbox.claim(1)[0].acked_chunks == 0


def test_depth_and_age_report_per_class(outbox):
    fill(
        outbox,
        [("media", "a1", "media"), ("metadata", "e1", "metadata"), ("media", "b1", "blank_media")],
    )
    assert outbox.depth() == {"metadata": 1, "media": 1, "blank_media": 1}
    assert outbox.pending_bytes() == 300
    assert outbox.oldest_pending_age_s() is not None


def test_a_dead_item_stays_visible_and_is_not_claimed(outbox):
    fill(outbox, [("media", "a1", "media")])
    (item,) = outbox.claim(1)
    outbox.dead(item.item_id, "file lost")
    outbox.recover_inflight()
    assert outbox.claim(1) == []
    with outbox.db.read() as conn:
        assert conn.execute("SELECT state, last_error FROM outbox").fetchone()[:] == (
            "dead",
            "file lost",
        )


def test_a_waiting_item_is_queued_and_claimed_again_like_a_pending_one_once_due(outbox):
    fill(outbox, [("metadata", "e1", "metadata"), ("media", "a1", "media")])
    now = 1_000_000.0
    meta, media = outbox.claim(10, now=now)
    outbox.clock = lambda: now
    outbox.defer([meta.item_id], 5.0, OutboxState.WAITING_CLASSIFICATION)
    outbox.defer([media.item_id], 5.0, OutboxState.WAITING_METADATA)
    assert outbox.depth() == {"metadata": 1, "media": 1}, "waiting is still queued"
    assert outbox.left() == (2, 200)
    assert [(q.kind, q.state) for q in outbox.breakdown()] == [
        ("media", "waiting_metadata"),
        ("metadata", "waiting_classification"),
    ]
    assert outbox.claim(10, now=now + 4.9) == []
    again = outbox.claim(10, now=now + 5.0)
    assert [i.item_id for i in again] == [meta.item_id, media.item_id]
    assert [i.attempts for i in again] == [0, 0], "waiting is no failed attempt"


def test_only_a_waiting_state_may_be_waited_in(outbox):
    fill(outbox, [("metadata", "e1", "metadata")])
    (item,) = outbox.claim(1)
    with pytest.raises(ValueError):
        outbox.defer([item.item_id], 5.0, OutboxState.PENDING)


def test_pending_and_waiting_items_compete_by_priority_and_age_alike(outbox):
    fill(outbox, [("media", "a1", "media"), ("metadata", "e1", "metadata")])
    (meta,) = outbox.claim(1, kinds=["metadata"])
    outbox.clock = lambda: 0.0
    outbox.defer([meta.item_id], 1.0, OutboxState.WAITING_CLASSIFICATION)
    order = [i.item_id for i in outbox.claim(10, now=10.0)]
    assert order == ["meta:e1", "media:a1"], "the waited-for metadata still goes first"


def test_a_sync_makes_waiting_items_due_at_once(outbox):
    fill(outbox, [("metadata", "e1", "metadata")])
    (item,) = outbox.claim(1)
    outbox.defer([item.item_id], 3600.0, OutboxState.WAITING_CLASSIFICATION)
    assert outbox.due_now() == 1
    assert [i.item_id for i in outbox.claim(1)] == ["meta:e1"]


def test_the_outbox_schedules_and_stamps_on_its_clock(outbox):
    fill(outbox, [("metadata", "e1", "metadata")])
    outbox.clock = lambda: 5_000.0
    (item,) = outbox.claim(1)
    delay = outbox.retry_later(item.item_id, "timeout")
    assert outbox.claim(1, now=5_000.0 + delay - 0.01) == []
    (item,) = outbox.claim(1, now=5_000.0 + delay)
    outbox.complete([item.item_id])
    with outbox.db.read() as conn:
        assert conn.execute("SELECT done_at FROM outbox").fetchone()[0] == 5_000.0
