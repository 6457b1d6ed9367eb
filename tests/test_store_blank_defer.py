"""Recall first: under the default configuration a blank verdict destroys no frame.

The blank filter misses animals (backlit, small, at night), so the default
``vision.blank_media_policy`` is ``defer``: a frame judged blank keeps its full resolution and
its thumbnail, and only retention, when a limit needs the room, may give it up. Each world
here is a real store in a temp dir; verdicts reach it through the store's own door
(``MediaStore.record_verdict``), or come from the real classification worker running the
default pack on bursts of empty synthetic scenes.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
from PIL import Image

from device.agent import Agent
from device.config import Settings
from device.store.db import open_readonly
from device.store.media import Media
from device.store.retention import Retention
from device.store.store import DB_NAME, MediaStore
from device.store.vocabulary import ItemKind, MediaState, Priority, item_id_for
from tests.support.trap_db import classify, open_store, queue_captures
from tests.support.world import trap_settings


def default_world(root: Path, **sections: dict) -> Settings:  # type: ignore[type-arg]
    """The shipped configuration: the test world changes only where things live (and the
    sections a test names), never the policy or the storage limits."""
    settings = trap_settings(root, **sections)
    shipped = Settings()
    assert settings.vision.blank_media_policy == shipped.vision.blank_media_policy == "defer"
    assert settings.storage.media_quota_bytes == shipped.storage.media_quota_bytes
    assert settings.storage.min_free_bytes == shipped.storage.min_free_bytes
    return settings


def frames_on_card(settings: Settings) -> list[tuple[str, str, str, str | None, str]]:
    conn = open_readonly(settings.storage.data_dir / DB_NAME)
    try:
        return conn.execute(
            "SELECT media_id, state, path, thumb_path, sha256 FROM media ORDER BY captured_at"
        ).fetchall()
    finally:
        conn.close()


def assert_every_frame_whole(settings: Settings) -> None:
    data = settings.storage.data_dir
    for media_id, state, path, thumb, sha in frames_on_card(settings):
        assert state == MediaState.STORED, f"{media_id} is {state}"
        assert hashlib.sha256((data / path).read_bytes()).hexdigest() == sha, media_id
        assert thumb is not None and (data / thumb).is_file(), f"{media_id} lost its thumbnail"


def room_needed_now(settings: Settings, store: MediaStore) -> int:
    retention = Retention(settings, lambda: store.db)
    retention.resync()
    return retention.room_needed()


def test_blank_verdicts_under_the_default_policy_keep_every_frame_whole(tmp_path):
    settings = default_world(tmp_path)
    store = open_store(settings)
    bursts = queue_captures(store, 3, frames=3, size=(320, 240))
    for n, burst in enumerate(bursts):
        assert (
            classify(store, burst, kind="blank", blank_score=0.97 + n / 100, delete_removed=False)
            == []
        ), "nothing to delete"
    if room_needed_now(settings, store):
        pytest.skip("this machine has less free space than the default reserve: retention may act")
    report = Retention(settings, lambda: store.db).enforce()
    assert report.evicted == [] and not report.over
    assert_every_frame_whole(settings)
    with store.db.read() as conn:
        priorities = dict(
            conn.execute("SELECT ref_id, priority FROM outbox WHERE kind = ?", (ItemKind.MEDIA,))
        )
    for burst in bursts:
        for media_id in burst.media_ids:
            assert priorities[media_id] == Priority.DEFERRED_BLANK, "held, to be sent last"
    held = Media(store.db).deferred_blanks()
    assert held.frames == 9
    assert held.bytes == sum(
        (settings.storage.data_dir / r[2]).stat().st_size for r in frames_on_card(settings)
    )
    store.close()


@pytest.mark.parametrize("policy", ["thumbnail", "delete"])
def test_the_opt_in_policies_destroy_frames_no_limit_asked_for(tmp_path, policy):
    """What ``thumbnail`` and ``delete`` cost: the full frames go with the verdict."""
    settings = trap_settings(tmp_path, vision={"blank_media_policy": policy})
    store = open_store(settings)
    [burst] = queue_captures(store, 1, frames=2)
    removed = classify(store, burst, kind="blank", delete_removed=False)
    assert len(removed) == (2 if policy == "thumbnail" else 4)
    frames = Media(store.db).for_event(burst.event_id)
    assert {f.state for f in frames} == {MediaState.EVICTED}
    assert Media(store.db).deferred_blanks().frames == 0
    store.close()


def empty_scenes(directory: Path) -> Path:
    """Synthetic blank bursts: flat grey scenes a little brighter each frame (auto-exposure),
    and nothing in them."""
    directory.mkdir()
    for i in range(3):
        grey = 118 + 2 * i
        Image.new("RGB", (320, 240), (grey, grey, grey)).save(directory / f"empty{i}.jpg")
    return directory


@pytest.mark.parametrize(
    "threshold",
    [None, 0.5],
    ids=["the-packs-own-calibration", "an-operator-threshold-that-calls-them-blank"],
)
def test_the_real_worker_on_the_default_pack_deletes_no_blank_frame(tmp_path, mock_pins, threshold):
    """Capture, store, the classification worker with the default pack, retention: the whole
    agent under the shipped configuration (vision on, as shipped), on empty bursts. The
    default pack's own table calls nothing blank (too few real photos behind it); with a
    threshold that does call the empty bursts blank the media policy is still the default,
    and it must keep every frame whole too."""
    vision: dict[str, object] = {"enabled": True}
    if threshold is not None:
        vision["blank_threshold"] = threshold
    settings = default_world(
        tmp_path,
        camera={"backend": "replay", "replay_dir": empty_scenes(tmp_path / "scenes")},
        vision=vision,
    )
    assert settings.vision.blank_media_policy == "defer"
    agent = Agent(settings)
    agent.start()
    try:
        for _ in range(2):
            agent.capture.trigger("pir")
            assert agent.capture.wait_idle(10)
            time.sleep(settings.capture.cooldown_s + 0.02)
        deadline = time.monotonic() + 60
        while agent.writer.queue.qsize() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        assert agent.vision is not None and agent.vision.wait_idle(120)
        retention = agent.uplink.retention
        retention.resync()
        limits_held = retention.room_needed() == 0
    finally:
        agent.stop()
    if not limits_held:
        pytest.skip("this machine has less free space than the default reserve: retention may act")
    conn = open_readonly(settings.storage.data_dir / DB_NAME)
    try:
        verdicts = conn.execute(
            "SELECT e.state, o.observation_type FROM events e JOIN observations o"
            " ON o.event_id = e.event_id AND o.media_id IS NULL"
        ).fetchall()
        deferred = conn.execute(
            "SELECT COUNT(*) FROM outbox WHERE kind = ? AND priority = ?",
            (ItemKind.MEDIA, Priority.DEFERRED_BLANK),
        ).fetchone()[0]
    finally:
        conn.close()
    assert [state for state, _ in verdicts] == ["classified", "classified"]
    blanks = [kind for _, kind in verdicts if kind == "blank"]
    if threshold is None:
        assert not blanks, "the default pack's table supports no threshold: nothing is blank"
    else:
        assert blanks, f"the engine judged no empty burst blank ({verdicts}): this shows nothing"
    assert deferred == len(blanks) * settings.capture.burst_frames
    assert len(frames_on_card(settings)) == 2 * settings.capture.burst_frames
    assert_every_frame_whole(settings)


def test_an_item_in_flight_when_the_verdict_lands_is_deferred_too(tmp_path):
    """The drain may hold a frame's item for a moment (its metadata gate turns it back): the
    verdict still moves it to the deferred class, so a metered link never takes it."""
    from device.store.outbox import Outbox

    store = open_store(default_world(tmp_path))
    [burst] = queue_captures(store, 1, frames=1)
    media = item_id_for(ItemKind.MEDIA, burst.media_ids[0])
    claimed = [i.item_id for i in Outbox(store.db).claim(10)]
    assert media in claimed
    classify(store, burst, kind="blank", delete_removed=False)
    with store.db.read() as conn:
        row = conn.execute("SELECT state, priority FROM outbox WHERE item_id = ?", (media,))
        assert tuple(row.fetchone()) == ("inflight", Priority.DEFERRED_BLANK)
    store.close()
