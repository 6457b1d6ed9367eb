"""Recording a classification: the verdict and the blank-media policy, in one transaction.

The world: a real store holding real bursts (``queue_captures``), and a verdict handed to it
the way the vision worker hands it (``MediaStore.write_thumbnail``, ``record_verdict``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from device.store.events import Events
from device.store.media import Media
from device.store.observations import Observations
from device.store.outbox import Outbox
from device.store.verdicts import Verdict
from device.store.vocabulary import EventState, ItemKind, MediaState, OutboxState, Priority
from device.store.vocabulary import item_id_for as item
from device.vision.engine import ObservationRow
from tests.support.trap_db import T0, Burst, noise_jpeg, open_store, queue_captures
from tests.support.world import trap_settings


def trap(tmp_path, policy: str = "thumbnail"):  # type: ignore[no-untyped-def]
    return open_store(trap_settings(tmp_path, vision={"blank_media_policy": policy}))


def observation(kind: str) -> ObservationRow:
    animal = kind == "animal"
    return ObservationRow(
        media_id=None,
        observation_type=kind,
        scientific_name="Vulpes vulpes" if animal else None,
        common_name="red fox" if animal else None,
        taxon_level="species" if animal else None,
        taxonomy=None,
        count=1 if animal else None,
        classification_probability=0.9,
        blank_score=0.99 if kind == "blank" else 0.01,
        classified_by="test-model@1",
        details={"top": ["fox"]},
    )


def verdict_for(store, burst: Burst, kind: str, rows: list[Any] | None = None) -> Verdict:  # type: ignore[no-untyped-def]
    todo = store.event_to_classify(burst.event_id)
    assert todo is not None
    thumbs = {
        f.media_id: store.write_thumbnail(f, noise_jpeg(64, 48, seed=f.seq)) for f in todo.media
    }
    return Verdict(
        event_id=burst.event_id,
        observations=rows or [observation(kind)],
        blank=kind == "blank",
        blank_score=0.99 if kind == "blank" else 0.01,
        thumbnails=thumbs,
        classified_at=T0,
    )


def outbox(store) -> dict[str, tuple[str, int]]:  # type: ignore[no-untyped-def]
    with store.db.read() as conn:
        return {
            r[0]: (r[1], r[2]) for r in conn.execute("SELECT item_id, state, priority FROM outbox")
        }


def test_an_animal_verdict_records_observations_thumbnails_and_the_event_state(tmp_path):
    store = trap(tmp_path)
    [burst] = queue_captures(store, 1, frames=2)
    verdict = verdict_for(store, burst, "animal")
    assert store.record_verdict(verdict) == []
    event = Events(store.db).get(burst.event_id)
    assert event is not None and (event.state, event.blank_score) == (EventState.CLASSIFIED, 0.01)
    [seen] = Observations(store.db).for_event(burst.event_id)
    assert (seen.observation_type, seen.common_name, seen.classified_by) == (
        "animal",
        "red fox",
        "test-model@1",
    )
    assert seen.classification_timestamp == T0 and seen.details == {"top": ["fox"]}
    frames = Media(store.db).for_event(burst.event_id)
    for frame in frames:
        thumb = verdict.thumbnails[frame.media_id]
        assert frame.state is MediaState.STORED
        assert frame.thumb_path == thumb.path == f"thumbs/2026/05/01/{frame.media_id}.jpg"
        assert (store.data_dir / thumb.path).is_file()
    queued = outbox(store)
    for media_id in burst.media_ids:
        assert queued[item(ItemKind.THUMBNAIL, media_id)] == ("pending", Priority.THUMBNAIL)
        assert queued[item(ItemKind.MEDIA, media_id)] == ("pending", Priority.MEDIA)
    store.close()


def test_a_blank_event_under_the_thumbnail_policy_keeps_thumbnails_and_drops_its_frames(tmp_path):
    store = trap(tmp_path, "thumbnail")
    [burst] = queue_captures(store, 1, frames=2)
    frames = Media(store.db).for_event(burst.event_id)
    removed = store.record_verdict(verdict_for(store, burst, "blank"))
    assert sorted(removed) == sorted(store.data_dir / f.path for f in frames if f.path)
    assert all(path.exists() for path in removed), "the caller deletes, after the commit"
    for frame in Media(store.db).for_event(burst.event_id):
        assert (frame.state, frame.error) == (
            MediaState.EVICTED,
            "blank event: blank_media_policy=thumbnail",
        )
        assert frame.thumb_path is not None
    queued = outbox(store)
    assert {k for k in queued if k.startswith("media:")} == set(), "no upload is owed any more"
    assert {s for k, (s, _) in queued.items() if k.startswith("thumb:")} == {"pending"}
    assert queued[item(ItemKind.METADATA, burst.event_id)][0] == "pending", "metadata stays"
    store.close()


def test_a_blank_event_under_the_defer_policy_keeps_everything_and_defers_its_frames(tmp_path):
    store = trap(tmp_path, "defer")
    [burst] = queue_captures(store, 1, frames=2)
    before = {f.media_id: (f.path, f.sha256) for f in Media(store.db).for_event(burst.event_id)}
    verdict = verdict_for(store, burst, "blank")
    assert store.record_verdict(verdict) == [], "a verdict under defer deletes nothing"
    for frame in Media(store.db).for_event(burst.event_id):
        assert frame.state is MediaState.STORED and frame.error is None
        assert (frame.path, frame.sha256) == before[frame.media_id]
        assert frame.thumb_path == verdict.thumbnails[frame.media_id].path
    queued = outbox(store)
    assert {queued[item(ItemKind.MEDIA, m)] for m in burst.media_ids} == {
        ("pending", Priority.DEFERRED_BLANK)
    }
    assert Outbox(store.db).depth() == {"metadata": 1, "thumbnail": 2, "deferred_blank": 2}
    assert Events(store.db).get(burst.event_id).blank_score == 0.99  # type: ignore[union-attr]
    store.close()


def test_defer_is_the_shipped_policy(tmp_path):
    from device.config import Settings

    assert Settings().vision.blank_media_policy == "defer"
    store = open_store(trap_settings(tmp_path))
    [burst] = queue_captures(store, 1, frames=1)
    assert store.record_verdict(verdict_for(store, burst, "blank")) == []
    assert outbox(store)[item(ItemKind.MEDIA, burst.media_ids[0])][1] == Priority.DEFERRED_BLANK
    store.close()


def test_a_test_capture_judged_blank_is_not_deferred(tmp_path):
    store = trap(tmp_path, "defer")
    [burst] = queue_captures(store, 1, frames=1, trigger_source="test")
    assert store.record_verdict(verdict_for(store, burst, "blank")) == []
    assert outbox(store)[item(ItemKind.MEDIA, burst.media_ids[0])] == (
        "pending",
        Priority.METADATA,
    )
    assert Media(store.db).deferred_blanks().frames == 0
    store.close()


def test_a_blank_event_under_the_keep_policy_sends_its_frames_last(tmp_path):
    store = trap(tmp_path, "keep")
    [burst] = queue_captures(store, 1, frames=2)
    assert store.record_verdict(verdict_for(store, burst, "blank")) == []
    queued = outbox(store)
    assert {queued[item(ItemKind.MEDIA, m)] for m in burst.media_ids} == {
        ("pending", Priority.BLANK_MEDIA)
    }
    assert Outbox(store.db).depth() == {"metadata": 1, "thumbnail": 2, "blank_media": 2}
    store.close()


def test_a_blank_event_under_the_delete_policy_keeps_only_its_metadata(tmp_path):
    store = trap(tmp_path, "delete")
    [burst] = queue_captures(store, 1, frames=2)
    verdict = verdict_for(store, burst, "blank")
    removed = store.record_verdict(verdict)
    thumbs = {store.data_dir / t.path for t in verdict.thumbnails.values()}
    assert thumbs <= set(removed) and len(removed) == 4
    for frame in Media(store.db).for_event(burst.event_id):
        assert frame.state is MediaState.EVICTED and frame.thumb_path is None
    assert list(outbox(store)) == [item(ItemKind.METADATA, burst.event_id)]
    store.close()


def test_a_test_capture_is_kept_at_its_priority_whatever_it_shows(tmp_path):
    store = trap(tmp_path, "delete")
    [burst] = queue_captures(store, 1, frames=1, trigger_source="test")
    assert store.record_verdict(verdict_for(store, burst, "blank")) == []
    [frame] = Media(store.db).for_event(burst.event_id)
    assert frame.state is MediaState.STORED and frame.thumb_path is not None
    assert outbox(store)[item(ItemKind.MEDIA, frame.media_id)] == ("pending", Priority.METADATA)
    store.close()


def test_frames_already_waiting_for_their_metadata_go_last_too(tmp_path):
    store = trap(tmp_path, "keep")
    [burst] = queue_captures(store, 1, frames=1)
    media = item(ItemKind.MEDIA, burst.media_ids[0])
    box = Outbox(store.db)
    box.claim(10)
    box.defer([media], 5.0, OutboxState.WAITING_METADATA)  # as the drain does
    store.record_verdict(verdict_for(store, burst, "blank"))
    assert outbox(store)[media] == ("waiting_metadata", Priority.BLANK_MEDIA)
    store.close()


def test_a_verdict_is_recorded_whole_or_not_at_all(tmp_path):
    class Broken:
        """An observation whose details cannot be read: the write fails half-way."""

        def __getattr__(self, name: str) -> Any:
            if name == "details":
                raise RuntimeError("details unreadable")
            return getattr(observation("blank"), name)

    store = trap(tmp_path, "thumbnail")
    [burst] = queue_captures(store, 1, frames=1)
    good = observation("blank")
    verdict = verdict_for(
        store, burst, "blank", rows=[good, replace(good, media_id=burst.media_ids[0]), Broken()]
    )
    with pytest.raises(RuntimeError):
        store.record_verdict(verdict)
    assert Observations(store.db).for_event(burst.event_id) == []
    [frame] = Media(store.db).for_event(burst.event_id)
    assert (frame.state, frame.thumb_path) == (MediaState.STORED, None)
    assert Events(store.db).get(burst.event_id).state is EventState.CLOSED  # type: ignore[union-attr]
    assert store.event_to_classify(burst.event_id) is not None, "it is classified again later"
    store.close()


def test_an_event_no_longer_waiting_for_a_verdict_is_left_as_it_is(tmp_path):
    store = trap(tmp_path, "thumbnail")
    [burst] = queue_captures(store, 1, frames=1)
    first = verdict_for(store, burst, "animal")
    store.record_verdict(first)
    again = replace(first, observations=[observation("blank")], blank=True)
    assert store.event_to_classify(burst.event_id) is None
    assert store.record_verdict(again) == []
    [seen] = Observations(store.db).for_event(burst.event_id)
    assert seen.observation_type == "animal"
    [frame] = Media(store.db).for_event(burst.event_id)
    assert frame.state is MediaState.STORED
    store.close()
