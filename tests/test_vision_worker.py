"""Classification after capture: observations, thumbnails, blank policy, upload order."""

from __future__ import annotations

import shutil
import time

import pytest

from device.agent import Agent
from device.config import DEFAULT_PACK_DIR
from device.store.db import open_readonly
from device.store.store import DB_NAME
from tests.support.world import trap_settings, write_jpegs


def run_bursts(agent: Agent, n: int) -> None:
    agent.start()
    try:
        for _ in range(n):
            agent.capture.trigger("pir")
            assert agent.capture.wait_idle(10)
            time.sleep(agent.settings.capture.cooldown_s + 0.02)
        deadline = time.monotonic() + 60
        while agent.writer.queue.qsize() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        assert agent.vision is not None and agent.vision.wait_idle(120)
    finally:
        agent.stop()


def query(settings, sql: str, *args):
    conn = open_readonly(settings.storage.data_dir / DB_NAME)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def blank_world(tmp_path, policy: str):
    """A replay camera over flat grey frames: nothing to see, so every event is blank."""
    from PIL import Image

    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        Image.new("RGB", (320, 240), (120 + i, 120 + i, 120 + i)).save(frames / f"g{i}.jpg")
    return trap_settings(
        tmp_path,
        camera={"backend": "replay", "replay_dir": frames},
        # An operator's threshold: the default pack's own table calls nothing blank.
        vision={
            "enabled": True,
            "blank_media_policy": policy,
            "tiles": False,
            "blank_threshold": 0.5,
        },
    )


@pytest.mark.parametrize("policy", ["thumbnail", "keep", "delete"])
def test_blank_events_keep_their_metadata_and_follow_the_media_policy(tmp_path, mock_pins, policy):
    settings = blank_world(tmp_path, policy)
    run_bursts(Agent(settings), 2)
    events = query(settings, "SELECT state, blank_score FROM events")
    assert [e[0] for e in events] == ["classified", "classified"]
    kinds = {
        r[0]
        for r in query(settings, "SELECT observation_type FROM observations WHERE media_id IS NULL")
    }
    assert kinds == {"blank"}
    media = query(settings, "SELECT state, path, thumb_path FROM media")
    data = settings.storage.data_dir
    outbox = dict(query(settings, "SELECT kind, COUNT(*) FROM outbox GROUP BY kind"))
    assert outbox["metadata"] == 2
    if policy == "keep":
        assert {m[0] for m in media} == {"stored"}
        assert all((data / m[1]).exists() for m in media)
        prios = {r[0] for r in query(settings, "SELECT priority FROM outbox WHERE kind='media'")}
        assert prios == {3}, "blank media go last"
    else:
        assert {m[0] for m in media} == {"evicted"}
        assert not any((data / m[1]).exists() for m in media)
        assert "media" not in outbox
    if policy == "delete":
        assert all(m[2] is None for m in media) and "thumbnail" not in outbox
    else:
        assert all((data / m[2]).exists() for m in media)
        assert outbox["thumbnail"] == len(media)


def test_events_left_unclassified_by_a_crash_are_classified_at_the_next_start(tmp_path, mock_pins):
    settings = blank_world(tmp_path, "keep")
    without = settings.model_copy(
        update={"vision": settings.vision.model_copy(update={"enabled": False})}
    )
    run_once = Agent(without)
    run_once.start()
    run_once.capture.trigger("pir")
    assert run_once.capture.wait_idle(10)
    run_once.stop()
    assert query(settings, "SELECT state FROM events")[0][0] == "closed"
    agent = Agent(settings)
    agent.start()
    try:
        assert agent.vision.wait_idle(60)
        time.sleep(0.1)
    finally:
        agent.stop()
    assert query(settings, "SELECT state FROM events")[0][0] == "classified"


def test_a_pack_that_cannot_serve_leaves_capture_running_and_events_unclassified(
    tmp_path, mock_pins
):
    broken = tmp_path / "pack"
    shutil.copytree(DEFAULT_PACK_DIR, broken)
    model = broken / "model.tflite"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    write_jpegs(tmp_path / "frames", 3)
    settings = trap_settings(
        tmp_path,
        camera={"backend": "replay", "replay_dir": tmp_path / "frames"},
        vision={"enabled": True, "pack": broken},
    )
    agent = Agent(settings)
    run_bursts(agent, 1)
    assert agent.vision.engine is None
    assert query(settings, "SELECT COUNT(*) FROM media WHERE state='stored'")[0][0] == 3
    rows = query(settings, "SELECT observation_type, details FROM observations")
    assert [r[0] for r in rows] == ["unclassified"]
    assert "no model pack" in rows[0][1]
    outbox = dict(query(settings, "SELECT kind, COUNT(*) FROM outbox GROUP BY kind"))
    assert outbox == {"media": 3, "metadata": 1, "thumbnail": 3}


def test_every_synthetic_event_gets_a_machine_observation_from_the_default_pack(
    tmp_path, mock_pins
):
    settings = trap_settings(tmp_path, camera={"main_size": (640, 480)}, vision={"enabled": True})
    agent = Agent(settings)
    agent.start()
    try:
        for _ in range(4):
            agent.capture.trigger("pir")
            assert agent.capture.wait_idle(10)
            time.sleep(1.1)  # the synthetic camera starts a new scene after a 1 s gap
        time.sleep(0.3)
        assert agent.vision.wait_idle(120)
    finally:
        agent.stop()
    rows = query(
        settings, "SELECT observation_type, classified_by FROM observations WHERE media_id IS NULL"
    )
    assert len(rows) == 4
    assert all(r[1] == "efficientnet-lite0-imagenet@1.0.0" for r in rows)
    for (kind,) in query(settings, "SELECT observation_type FROM observations"):
        assert kind in ("animal", "blank", "human", "vehicle", "unknown")


def test_inference_never_delays_capture(tmp_path, mock_pins):
    """A classifier that takes 0.5 s per event must not slow bursts or drop triggers."""
    settings = blank_world(tmp_path, "keep")
    agent = Agent(settings)
    agent.start()
    try:
        engine = agent.vision.engine
        real = engine.classify_event

        def slow(frames):
            time.sleep(0.5)
            return real(frames)

        engine.classify_event = slow
        for _ in range(4):
            agent.capture.trigger("pir")
            assert agent.capture.wait_idle(10)
            time.sleep(settings.capture.cooldown_s + 0.02)
        captured, bursts = agent.capture.stats.frames, agent.capture.stats.events
        still_classifying = not agent.vision.wait_idle(0)
        assert agent.vision.wait_idle(30)
    finally:
        agent.stop()
    assert (captured, bursts) == (12, 4)
    assert still_classifying, "capture finished while inference was still busy"
    assert [r[0] for r in query(settings, "SELECT state FROM events")] == ["classified"] * 4


def test_a_test_capture_is_kept_sent_first_and_not_held_by_the_cooldown(tmp_path, mock_pins):
    """capture-test: even a blank frame is kept, at the top priority, during a cooldown."""
    settings = blank_world(tmp_path, "thumbnail")
    settings.capture.cooldown_s = 30.0
    agent = Agent(settings)
    agent.start()
    try:
        agent.capture.trigger("pir")
        assert agent.capture.wait_idle(10)
        assert agent.capture_test() == "triggered"  # inside the PIR burst's cooldown
        assert agent.capture.wait_idle(10)
        time.sleep(0.3)
        assert agent.vision.wait_idle(60)
    finally:
        agent.stop()
    rows = query(
        settings,
        "SELECT e.trigger_source, m.state, o.priority FROM media m"
        " JOIN events e ON e.event_id = m.event_id"
        " LEFT JOIN outbox o ON o.item_id = 'media:' || m.media_id",
    )
    test_rows = [r for r in rows if r[0] == "test"]
    assert len(test_rows) == settings.capture.burst_frames
    assert all(state == "stored" and priority == 0 for _, state, priority in test_rows)
    assert {r[1] for r in rows if r[0] == "pir"} == {"evicted"}, "the PIR blanks follow policy"


class NamedEngine:
    """An engine that sees what it is told to: every event is a red fox, said by ``name``."""

    def __init__(self, name: str) -> None:
        self.classified_by = name
        self.events = 0

    def classify_event(self, frames):  # type: ignore[no-untyped-def]
        from device.vision.engine import EventVerdict, ObservationRow

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
            classified_by=self.classified_by,
        )
        return EventVerdict(observations=[row], blank_score=0.02, is_blank=False, frame_errors={})

    def learn_background(self, lores) -> None:  # type: ignore[no-untyped-def]
        pass

    def use_site_memory(self, memory):  # type: ignore[no-untyped-def]
        pass  # it sees what it is told, not the scene


def test_the_worker_stamps_verdicts_with_its_clock_and_classifies_with_the_engine_it_serves(
    tmp_path,
):
    from datetime import datetime, timedelta, timezone

    from device.store.observations import Observations
    from device.vision.worker import ClassificationWorker
    from tests.support.trap_db import open_store, queue_captures

    settings = trap_settings(tmp_path, vision={"enabled": True})
    store = open_store(settings)
    first, second = queue_captures(store, 2, frames=1)
    at = datetime(2026, 5, 2, 6, 30, tzinfo=timezone(timedelta(hours=3)))
    old, new = NamedEngine("old@1"), NamedEngine("new@2")
    worker = ClassificationWorker(settings, store, old, clock=lambda: at)
    worker.start()
    try:
        worker.submit(first.event_id)
        assert worker.wait_idle(10)
        worker.serve(new)  # the one door for a swap (OTA, rollback)
        assert worker.engine is new
        worker.submit(second.event_id)
        assert worker.wait_idle(10)
    finally:
        worker.stop(10)
    seen = {
        burst.event_id: Observations(store.db).for_event(burst.event_id)[0]
        for burst in (first, second)
    }
    assert seen[first.event_id].classified_by == "old@1"
    assert seen[second.event_id].classified_by == "new@2"
    assert {o.classification_timestamp for o in seen.values()} == {at}
    assert (old.events, new.events) == (1, 1)
    store.close()
