"""Done outbox rows are pruned after ``storage.outbox_done_retention_days``; what they used to
tell (was this uploaded?) lives on the rows they describe, so nothing forgets it.

The world: a real store with real captures; "ingest acknowledged it" is ``Outbox.complete``,
as the drain calls it; days pass on a fake wall clock.
"""

from __future__ import annotations

import pytest

from device.capture.types import ACTIVITY, EventClosed
from device.store.events import Events
from device.store.media import Media
from device.store.outbox import Outbox
from device.store.retention import DAY_S, Retention
from device.store.vocabulary import ItemKind, MediaState, OutboxState, item_id_for
from device.uplink.commands import SyncReport
from device.uplink.drain import Drain
from tests.support.clock import ManualClock
from tests.support.trap_db import T0, classify, open_store, queue_captures
from tests.support.uplink import FakeLink
from tests.support.world import trap_settings

DEVICE = "test-trap"
ACKED_AT = 1_900_000_000.0  # unix time ingest acknowledged everything below
RETENTION_DAYS = 30


@pytest.fixture
def settings(tmp_path):
    return trap_settings(
        tmp_path / "trap",
        storage={"min_free_bytes": 0, "outbox_done_retention_days": RETENTION_DAYS},
    )


@pytest.fixture
def trap(settings):
    store = open_store(settings)
    yield store
    store.close()


def outbox_rows(store) -> dict[str, str]:  # type: ignore[no-untyped-def]
    with store.db.read() as conn:
        return dict(conn.execute("SELECT item_id, state FROM outbox").fetchall())


def acknowledge(store, item_ids: list[str]) -> None:  # type: ignore[no-untyped-def]
    Outbox(store.db, clock=lambda: ACKED_AT).complete(item_ids)


def prune_after(store, days: float) -> int:  # type: ignore[no-untyped-def]
    box = Outbox(store.db, clock=lambda: ACKED_AT + days * DAY_S)
    return box.prune_done(RETENTION_DAYS * DAY_S)


def test_done_rows_go_only_after_the_retention_period_and_queued_ones_never(trap):
    [burst] = queue_captures(trap, 1, frames=2)
    meta = item_id_for(ItemKind.METADATA, burst.event_id)
    first, second = (item_id_for(ItemKind.MEDIA, m) for m in burst.media_ids)
    acknowledge(trap, [meta, first])
    assert prune_after(trap, RETENTION_DAYS - 1) == 0
    assert prune_after(trap, RETENTION_DAYS + 1) == 2
    assert outbox_rows(trap) == {second: OutboxState.PENDING}


def test_an_acknowledgement_is_stamped_on_the_row_it_describes_in_the_same_transaction(trap):
    [burst] = queue_captures(trap, 1, frames=1)
    [classified] = queue_captures(trap, 1, frames=1, start=T0.replace(hour=22))
    classify(trap, classified)
    media_id = burst.media_ids[0]
    thumb_of = classified.media_ids[0]
    acknowledge(
        trap,
        [
            item_id_for(ItemKind.METADATA, burst.event_id),
            item_id_for(ItemKind.MEDIA, media_id),
            item_id_for(ItemKind.THUMBNAIL, thumb_of),
            "tel:123",  # a heartbeat's id: no row, nothing to stamp
        ],
    )
    event = Events(trap.db).get(burst.event_id)
    frames = Media(trap.db).get_many([media_id, thumb_of])
    assert event is not None and event.uploaded_at == ACKED_AT
    assert frames[media_id].uploaded_at == ACKED_AT
    assert frames[media_id].thumb_uploaded_at is None
    assert frames[thumb_of].thumb_uploaded_at == ACKED_AT
    assert frames[thumb_of].uploaded_at is None
    assert Events(trap.db).get(classified.event_id).uploaded_at is None  # type: ignore[union-attr]


def test_a_pruned_metadata_row_still_lets_its_files_go(trap):
    [burst] = queue_captures(trap, 1, frames=1)
    meta = item_id_for(ItemKind.METADATA, burst.event_id)
    media = item_id_for(ItemKind.MEDIA, burst.media_ids[0])
    acknowledge(trap, [meta])
    prune_after(trap, RETENTION_DAYS + 1)
    assert meta not in outbox_rows(trap)
    clock = ManualClock(start=0.0)
    link = FakeLink(DEVICE)
    drain = Drain(
        trap.db, link, data_dir=trap.data_dir, device_id=DEVICE, vision=False, clock=clock
    )
    drain.step()
    assert link.item_ids_sent() == [media], "its metadata reached ingest long ago"


def test_a_pruned_metadata_row_is_not_queued_again_when_its_event_closes_again(trap):
    [burst] = queue_captures(trap, 1, frames=1)
    meta = item_id_for(ItemKind.METADATA, burst.event_id)
    acknowledge(trap, [meta])
    prune_after(trap, RETENTION_DAYS + 1)
    trap.commit([EventClosed(burst.event_id, T0, 1, ACTIVITY)])  # a close seen twice
    assert meta not in outbox_rows(trap)


def test_retention_still_evicts_uploaded_files_first_once_their_rows_are_pruned(settings, trap):
    uploaded, kept = queue_captures(trap, 2, frames=1, size=(320, 240))
    classify(trap, uploaded, probability=0.97)
    classify(trap, kept, probability=0.97)
    acknowledge(
        trap,
        [
            item_id_for(ItemKind.MEDIA, uploaded.media_ids[0]),
            item_id_for(ItemKind.THUMBNAIL, uploaded.media_ids[0]),
        ],
    )
    prune_after(trap, RETENTION_DAYS + 1)
    settings.storage.media_quota_bytes = 1
    retention = Retention(settings, lambda: trap.db)
    retention.resync()
    retention.enforce()
    frames = Media(trap.db).get_many([uploaded.media_ids[0], kept.media_ids[0]])
    gone, still = frames[uploaded.media_ids[0]], frames[kept.media_ids[0]]
    assert (gone.state, gone.error) == (MediaState.EVICTED, "retention: uploaded media")
    assert gone.thumb_path is None, "its uploaded thumbnail went too"
    assert still.state is MediaState.STORED, "a confident, unsent animal is never evicted"


def test_reports_still_say_what_reached_the_cloud_once_the_rows_are_pruned(trap):
    [burst] = queue_captures(trap, 1, frames=2)
    sent, unsent = burst.media_ids
    acknowledge(
        trap,
        [item_id_for(ItemKind.METADATA, burst.event_id), item_id_for(ItemKind.MEDIA, sent)],
    )
    prune_after(trap, RETENTION_DAYS + 1)
    box = Outbox(trap.db)
    assert box.depth() == {"media": 1} and box.left()[0] == 1
    report = SyncReport.read(trap.db, None, None, None).as_json()
    assert report["left"]["items"] == 1
    assert report["captures"]["events"] == [{"event_id": burst.event_id, "metadata_uploaded": True}]
    by_id = {m["media_id"]: m for m in report["captures"]["media"]}
    assert (by_id[sent]["uploaded"], by_id[sent]["upload_queued"]) == (True, True)
    assert (by_id[unsent]["uploaded"], by_id[unsent]["upload_queued"]) == (False, True)


def test_retention_prunes_at_most_hourly_with_the_configured_period(settings, trap):
    [burst] = queue_captures(trap, 1, frames=1)
    acknowledge(trap, [item_id_for(ItemKind.METADATA, burst.event_id)])
    mono = ManualClock(start=0.0)
    wall = [ACKED_AT + (RETENTION_DAYS - 1) * DAY_S]
    retention = Retention(
        settings, lambda: trap.db, monotonic=mono.monotonic, wall_clock=lambda: wall[0]
    )
    retention.enforce()  # at start: too young to go
    assert len(outbox_rows(trap)) == 2
    wall[0] += 2 * DAY_S
    retention.enforce()  # within the hour since the last prune: not looked at again
    assert len(outbox_rows(trap)) == 2
    mono.advance(3600)
    retention.enforce()
    assert list(outbox_rows(trap).values()) == [OutboxState.PENDING]
