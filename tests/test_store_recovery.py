"""A damaged database at start: moved aside (never deleted), rebuilt from the JPEGs' own EXIF
records, every capture queued again; recorded, and shown in status and telemetry.

Each corruption is real bytes on a real SQLite file written by the real store.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from device.status import collect
from device.store.health import RECOVERY_KEY, StoreState, inspect
from device.store.recovery import aside_files
from device.store.store import DB_NAME, MediaStore
from tests.support.trap_db import open_store, queue_captures
from tests.support.world import trap_settings

pytestmark = pytest.mark.timeout(120)

GARBAGE = bytes(range(256)) * 64  # 16 KiB, deterministic, not SQLite


def jpegs(data_dir: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(data_dir)): p.read_bytes()
        for p in (data_dir / "media").rglob("*")
        if p.is_file()
    }


def build_trap(root: Path):  # type: ignore[no-untyped-def]
    """A trap with 3 closed bursts of 2 frames, cleanly closed (WAL checkpointed)."""
    settings = trap_settings(root)
    store = open_store(settings)
    bursts = queue_captures(store, 3, frames=2)
    store.close()
    media_ids = sorted(m for b in bursts for m in b.media_ids)
    return settings, media_ids


def overwrite_header(db: Path) -> None:
    with db.open("r+b") as f:
        f.write(GARBAGE[:100])


def overwrite_media_root_page(db: Path) -> None:
    conn = sqlite3.connect(db)
    (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name='media'").fetchone()
    (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    conn.close()
    with db.open("r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(GARBAGE[:page_size])


def truncate(db: Path) -> None:
    size = db.stat().st_size
    with db.open("r+b") as f:
        f.truncate(size // 2)


def append_garbage(db: Path) -> None:
    with db.open("ab") as f:
        f.write(GARBAGE)


def pending_media(settings) -> list[str]:  # type: ignore[no-untyped-def]
    conn = sqlite3.connect(settings.storage.data_dir / DB_NAME)
    try:
        return sorted(
            r[0]
            for r in conn.execute(
                "SELECT ref_id FROM outbox WHERE kind='media' AND state='pending'"
            )
        )
    finally:
        conn.close()


def reopen(settings) -> MediaStore:  # type: ignore[no-untyped-def]
    store = MediaStore(settings)
    store.open()
    return store


@pytest.mark.parametrize(
    "damage",
    [overwrite_header, overwrite_media_root_page, truncate],
    ids=["header-overwritten", "media-root-page-overwritten", "truncated"],
)
def test_a_damaged_database_is_moved_aside_and_rebuilt_from_the_jpegs(tmp_path, damage):
    settings, media_ids = build_trap(tmp_path)
    data_dir = settings.storage.data_dir
    before = jpegs(data_dir)
    assert len(before) == 6
    damage(data_dir / DB_NAME)
    damaged = (data_dir / DB_NAME).read_bytes()

    # Before the agent runs, status tells the truth: unreadable, counts unknown, exit 11.
    report = collect(settings)
    assert report["store"]["state"] == "unreadable", report["store"]
    assert report["store"]["reason"] in ("corrupt", "not_a_database")
    assert report["events"] is None and report["exit_code"] == 11
    assert "copy the card before wiping it" in report["store"]["message"]

    store = reopen(settings)
    try:
        assert store.mode == "primary", store.last_error  # never the RAM spool
        assert store.recovery is not None
    finally:
        store.close()

    assert jpegs(data_dir) == before  # same files, byte-identical
    assert pending_media(settings) == media_ids  # every capture queued again
    (aside,) = aside_files(data_dir)
    assert aside.name.startswith(f"{DB_NAME}.corrupt-")
    assert aside.read_bytes() == damaged  # kept as it was, not deleted or "repaired"

    report = collect(settings)
    assert report["store"]["state"] == "ok" and report["exit_code"] == 0
    assert report["media"] == 6 and report["events"] == 3
    recovered = report["store"]["recovery"]
    assert recovered["aside"] == aside.name and recovered["rebuilt_media"] == 6
    assert report["counters"][RECOVERY_KEY] == 1
    # Rebuilt events are closed again, so their metadata is queued too.
    assert report["outbox_pending"] == 9


def test_garbage_appended_to_the_database_is_ignored_by_sqlite_and_loses_nothing(tmp_path):
    settings, media_ids = build_trap(tmp_path)
    data_dir = settings.storage.data_dir
    before = jpegs(data_dir)
    append_garbage(data_dir / DB_NAME)
    assert inspect(data_dir).state is StoreState.OK  # the header's page count bounds the file
    store = reopen(settings)
    try:
        assert store.mode == "primary", store.last_error
        assert store.recovery is None  # nothing to recover: not moved aside needlessly
    finally:
        store.close()
    assert aside_files(data_dir) == []
    assert jpegs(data_dir) == before
    assert pending_media(settings) == media_ids


def test_a_corrupted_wal_loses_no_capture(tmp_path):
    """Power cut with commits still in the WAL, then the WAL damaged: SQLite drops the frames
    from the first bad checksum on; reconcile re-registers the files those rows described."""
    settings = trap_settings(tmp_path / "trap")
    store = open_store(settings)
    try:
        bursts = queue_captures(store, 3, frames=2)
        # The card as a power cut leaves it: the writer never closed, the WAL not checkpointed.
        card = tmp_path / "card"
        shutil.copytree(settings.storage.data_dir, card / "data")
    finally:
        store.close()
    media_ids = sorted(m for b in bursts for m in b.media_ids)
    copy = trap_settings(card)
    data_dir = copy.storage.data_dir
    wal = data_dir / f"{DB_NAME}-wal"
    assert wal.stat().st_size > 8192
    with wal.open("r+b") as f:
        f.seek(wal.stat().st_size // 2)
        f.write(GARBAGE[:8192])
    (data_dir / f"{DB_NAME}-shm").unlink()  # as after a reboot: the index is rebuilt from the WAL
    before = jpegs(data_dir)

    lost = sqlite3.connect(data_dir / DB_NAME)
    try:
        rows = lost.execute("SELECT COUNT(*) FROM media").fetchone()[0]
    except sqlite3.DatabaseError:
        rows = 0
    finally:
        lost.close()
    assert rows < len(media_ids)  # the damage really cost rows

    store = reopen(copy)
    try:
        assert store.mode == "primary", store.last_error
    finally:
        store.close()
    assert jpegs(data_dir) == before
    assert pending_media(copy) == media_ids


def test_the_agent_rebuilds_instead_of_spooling_to_ram_and_tells_the_cloud(tmp_path, mock_pins):
    from device.agent import Agent

    settings, media_ids = build_trap(tmp_path)
    overwrite_media_root_page(settings.storage.data_dir / DB_NAME)
    agent = Agent(settings)
    agent.start()
    try:
        assert agent.store.mode == "primary", agent.store.last_error
        assert agent.store.spool_count() == 0
        events = [e for e in agent.uplink.heartbeat.events if e.code == "db_recovered"]
        assert len(events) == 1
        assert "6 captures re-registered" in events[0].message
        assert aside_files(settings.storage.data_dir)[0].name in events[0].message
    finally:
        agent.stop()
    assert pending_media(settings) == media_ids


def test_status_text_shows_the_recovery(tmp_path):
    from device.status import render

    settings, _ = build_trap(tmp_path)
    overwrite_header(settings.storage.data_dir / DB_NAME)
    reopen(settings).close()
    text = render(collect(settings))
    assert "db recovered" in text and ".corrupt-" in text and "6 captures rebuilt" in text
    record = json.loads(
        sqlite3.connect(settings.storage.data_dir / DB_NAME)
        .execute("SELECT value FROM kv WHERE key=?", (RECOVERY_KEY,))
        .fetchone()[0]
    )
    assert record["reason"].startswith("not_a_database")


def test_a_second_damage_keeps_both_damaged_files(tmp_path):
    settings, media_ids = build_trap(tmp_path)
    db = settings.storage.data_dir / DB_NAME
    overwrite_header(db)
    reopen(settings).close()
    overwrite_header(db)
    reopen(settings).close()
    assert len(aside_files(settings.storage.data_dir)) == 2
    assert pending_media(settings) == media_ids
    assert not os.path.exists(f"{db}.corrupt")  # named by timestamp, never a fixed name
