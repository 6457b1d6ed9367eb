"""Low battery's second step: the classification worker pauses. Events submitted meanwhile
wait, still 'closed' in the store, none is classified; resume classifies the backlog; a stop
while paused loses nothing, since the next start's catch_up finds them in the store.

A real store with real bursts, the real worker thread, an engine that counts what it sees.
"""

from __future__ import annotations

from device.store.events import Events
from device.vision.engine import EventVerdict, ObservationRow
from device.vision.worker import ClassificationWorker
from tests.support.trap_db import open_store, queue_captures
from tests.support.world import trap_settings


class CountingEngine:
    """Every event is a red fox; ``events`` counts the events it was asked about."""

    def __init__(self) -> None:
        self.events = 0

    def classify_event(self, frames):  # type: ignore[no-untyped-def]
        self.events += 1
        row = ObservationRow(
            media_id=None,
            observation_type="animal",
            scientific_name="Vulpes vulpes",
            common_name="red fox",
            taxon_level="species",
            taxonomy=None,
            count=1,
            classification_probability=0.9,
            blank_score=0.02,
            classified_by="counting@1",
        )
        return EventVerdict(observations=[row], blank_score=0.02, is_blank=False, frame_errors={})

    def learn_background(self, lores) -> None:  # type: ignore[no-untyped-def]
        pass

    def use_site_memory(self, memory):  # type: ignore[no-untyped-def]
        pass


def test_a_paused_worker_holds_every_event_and_resume_classifies_them_all(tmp_path):
    settings = trap_settings(tmp_path, vision={"enabled": True})
    store = open_store(settings)
    bursts = queue_captures(store, 3, frames=1)
    engine = CountingEngine()
    worker = ClassificationWorker(settings, store, engine)
    worker.start()
    try:
        worker.pause()
        assert worker.paused
        for burst in bursts:
            worker.submit(burst.event_id)
        assert worker.wait_idle(10), "held events do not keep a stop waiting"
        assert worker.held == 3
        assert engine.events == 0
        assert len(Events(store.db).awaiting_classification()) == 3, "still 'closed'"

        worker.resume()
        assert worker.wait_idle(10)
        assert (engine.events, worker.held, worker.paused) == (3, 0, False)
        assert Events(store.db).awaiting_classification() == []
    finally:
        worker.stop(10)
        store.close()


def test_a_stop_while_paused_leaves_the_events_for_the_next_start(tmp_path):
    settings = trap_settings(tmp_path, vision={"enabled": True})
    store = open_store(settings)
    bursts = queue_captures(store, 2, frames=1)
    paused = ClassificationWorker(settings, store, CountingEngine())
    paused.start()
    paused.pause()
    for burst in bursts:
        paused.submit(burst.event_id)
    assert paused.wait_idle(10)
    paused.stop(10)
    assert not paused.is_alive()

    engine = CountingEngine()
    restarted = ClassificationWorker(settings, store, engine)  # the next start
    restarted.start()
    try:
        assert restarted.catch_up() == 2
        assert restarted.wait_idle(10)
        assert engine.events == 2
        assert Events(store.db).awaiting_classification() == []
    finally:
        restarted.stop(10)
        store.close()


def test_an_event_submitted_twice_while_paused_is_held_once(tmp_path):
    settings = trap_settings(tmp_path, vision={"enabled": True})
    store = open_store(settings)
    (burst,) = queue_captures(store, 1, frames=1)
    engine = CountingEngine()
    worker = ClassificationWorker(settings, store, engine)
    worker.start()
    try:
        worker.pause()
        worker.submit(burst.event_id)
        worker.catch_up()  # a catch-up finds the same closed event
        assert worker.wait_idle(10)
        assert worker.held == 1
        worker.resume()
        assert worker.wait_idle(10)
        assert engine.events == 1
    finally:
        worker.stop(10)
        store.close()
