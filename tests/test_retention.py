"""Retention on a full card: what goes first, what never goes, and capture carrying on."""

from __future__ import annotations

import sqlite3
import time

import pytest

from device.agent import Agent
from device.store.outbox import Outbox
from device.store.retention import Retention
from device.store.store import DB_NAME
from tests.support.trap_db import classify, noise_jpeg, open_store, queue_captures
from tests.support.world import trap_settings

pytestmark = pytest.mark.timeout(60)


def media(store) -> dict[str, tuple]:  # type: ignore[no-untyped-def]
    with store.db.read() as conn:
        return {
            r[0]: (r[1], r[2], r[3])
            for r in conn.execute("SELECT media_id, state, error, thumb_path FROM media")
        }


def mark_uploaded(store, item_ids: list[str]) -> None:  # type: ignore[no-untyped-def]
    Outbox(store.db).complete(item_ids)


def test_eviction_goes_uploaded_then_blank_thumbnails_then_oldest_low_confidence(tmp_path):
    # Blank frames kept (policy "keep"), so retention is what evicts them.
    settings = trap_settings(
        tmp_path, storage={"min_free_bytes": 0}, vision={"blank_media_policy": "keep"}
    )
    store = open_store(settings)
    uploaded, blank, unsure, fox = queue_captures(store, 4, frames=1, size=(320, 240))
    classify(store, uploaded, kind="animal", probability=0.95)
    classify(store, blank, kind="blank", probability=0.99, thumbnail=noise_jpeg(96, 72, 1))
    classify(store, unsure, kind="animal", probability=0.3)
    classify(store, fox, kind="animal", probability=0.97)
    mark_uploaded(store, [f"media:{uploaded.media_ids[0]}"])
    sizes = {}
    with store.db.read() as conn:
        for mid, size, thumb in conn.execute("SELECT media_id, size, thumb_size FROM media"):
            sizes[mid] = (size, thumb)
    total = sum(a + b for a, b in sizes.values())

    def run_with_quota(quota: int) -> Retention:
        settings.storage.media_quota_bytes = quota
        retention = Retention(settings, lambda: store.db)
        retention.resync()
        assert retention.media_bytes == total - freed[0]
        retention.enforce()
        return retention

    freed = [0]
    # Just over the quota by one byte: the uploaded frame alone is enough.
    retention = run_with_quota(total - 1)
    state = media(store)
    assert state[uploaded.media_ids[0]][:2] == ("evicted", "retention: uploaded media")
    assert all(state[b.media_ids[0]][0] == "stored" for b in (blank, unsure, fox))
    freed[0] = sizes[uploaded.media_ids[0]][0]

    # Tighter: next the blank thumbnail, then the low-confidence frame, never the sure fox.
    retention = run_with_quota(total - freed[0] - sizes[blank.media_ids[0]][1])
    state = media(store)
    assert state[blank.media_ids[0]][2] is None  # its thumbnail is gone
    assert state[blank.media_ids[0]][0] == "stored"  # the blank frame itself not yet
    assert state[unsure.media_ids[0]][0] == "stored"
    freed[0] += sizes[blank.media_ids[0]][1]

    retention = run_with_quota(1)
    state = media(store)
    assert state[unsure.media_ids[0]][:2] == ("evicted", "retention: low-confidence media")
    assert state[blank.media_ids[0]][0] == "evicted"
    assert state[fox.media_ids[0]][0] == "stored", "a confident animal is never evicted"
    assert retention.disk_full, "still over quota with nothing evictable: reported"
    with store.db.read() as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 4
        assert conn.execute("SELECT count(*) FROM observations").fetchone()[0] == 4
        dead = dict(conn.execute("SELECT item_id, last_error FROM outbox WHERE state='dead'"))
        files = conn.execute("SELECT path FROM media WHERE state='evicted'").fetchall()
    assert dead[f"media:{unsure.media_ids[0]}"] == "retention: low-confidence media"
    assert f"meta:{unsure.event_id}" not in dead
    for (path,) in files:
        assert not (store.data_dir / path).exists()
    store.close()


def test_the_agent_keeps_capturing_over_its_quota_and_says_the_disk_is_full(tmp_path, mock_pins):
    settings = trap_settings(
        tmp_path,
        storage={"media_quota_bytes": 20_000, "min_free_bytes": 0},
        uplink={"transport": "none"},
    )
    agent = Agent(settings)
    agent.start()
    try:
        for _ in range(5):
            agent.capture.trigger("pir")
            assert agent.capture.wait_idle(10)
            time.sleep(settings.capture.cooldown_s + 0.02)
        deadline = time.monotonic() + 10
        while agent.writer.stats.stored < 15 and time.monotonic() < deadline:
            time.sleep(0.05)
        full = agent.uplink.retention.disk_full
        reported = [e.code for e in agent.uplink.heartbeat.events]
    finally:
        agent.stop()
    conn = sqlite3.connect(tmp_path / "data" / DB_NAME)
    states = dict(conn.execute("SELECT state, count(*) FROM media GROUP BY state").fetchall())
    conn.close()
    assert states == {"stored": 15}, "unclassified frames are not evictable: all kept"
    assert agent.writer.stats.stored == 15
    assert full and "disk_full" in reported
