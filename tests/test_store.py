"""The durable store: files first, then rows; reconcile makes them agree after a crash."""

from __future__ import annotations

import sqlite3
import time
import uuid
from datetime import UTC, datetime

import numpy as np
import pytest

from device.capture.types import ACTIVITY, CapturedFrame, EventClosed
from device.clock import ClockState
from device.hardware.camera import Frame
from device.store import files
from device.store.db import Database, SchemaTooNew, open_readonly
from device.store.exif import read_record
from device.store.schema import SCHEMA_VERSION
from device.store.store import DB_NAME, MediaStore
from device.uplink.payloads import capture_meta
from tests.support.clock import ManualClock
from tests.support.world import jpeg_bytes, trap_settings


def frame_item(event_id: str, seq: int, jpeg: bytes, error: str | None = None) -> CapturedFrame:
    return CapturedFrame(
        event_id=event_id,
        media_id=str(uuid.uuid4()),
        seq=seq,
        captured_at=datetime(2026, 11, 27, 8, 30, 0, 123000, tzinfo=UTC),
        captured_mono=time.monotonic(),
        trigger_mono=None,
        capture_method=ACTIVITY,
        trigger_source="pir",
        clock=ClockState("rtc", False),
        ir_on=False,
        frame=Frame(jpeg, np.zeros((6, 8), np.uint8), 160, 120, error=error),
    )


@pytest.fixture
def store(tmp_path):
    s = MediaStore(trap_settings(tmp_path, location={"latitude": -2.33, "longitude": 34.83}))
    s.open()
    yield s
    s.close()


def rows(store: MediaStore, sql: str, *args):
    with store.db.read() as conn:
        return conn.execute(sql, args).fetchall()


def test_a_committed_frame_has_a_file_a_row_and_an_outbox_entry(store):
    event = str(uuid.uuid4())
    item = frame_item(event, 0, jpeg_bytes())
    result = store.commit([item, EventClosed(event, item.captured_at, 1, ACTIVITY)])
    assert result.committed_media == [item.media_id]
    (media,) = rows(store, "SELECT * FROM media")
    path = store.data_dir / media["path"]
    assert media["path"] == f"media/2026/11/27/{item.media_id}.jpg"
    assert files.sha256_file(path) == media["sha256"]
    assert media["size"] == path.stat().st_size
    assert media["clock_source"] == "rtc" and media["clock_synced"] == 0
    (event_row,) = rows(store, "SELECT * FROM events")
    assert event_row["state"] == "closed" and event_row["frame_count"] == 1
    kinds = sorted(r["kind"] for r in rows(store, "SELECT kind FROM outbox"))
    assert kinds == ["media", "metadata"]


def test_stored_jpegs_carry_exif_time_with_offset_gps_and_identity(store):
    from PIL import Image

    event = str(uuid.uuid4())
    item = frame_item(event, 2, jpeg_bytes())
    store.commit([item])
    path = next((store.data_dir / "media").rglob("*.jpg"))
    with Image.open(path) as im:
        exif = im.getexif()
        sub = exif.get_ifd(0x8769)
        gps = exif.get_ifd(0x8825)
        im.load()  # the image data is intact after the splice
    assert sub[0x9003] == "2026:11:27 08:30:00"
    assert sub[0x9011] == "+00:00"
    assert sub[0xA431] == "test-trap"
    assert sub[0xA420] == item.media_id.replace("-", "")
    assert exif[0x010F] == "camtrap"
    assert gps[1] == "S" and gps[3] == "E"
    assert float(gps[2][0]) == 2.0
    record = read_record(path)
    assert record["event_id"] == event and record["seq"] == 2


@pytest.mark.parametrize(
    ("jpeg", "error", "reason"),
    [
        (b"", None, "empty frame"),
        (jpeg_bytes()[:500], None, "truncated JPEG"),
        (b"this is not an image at all", None, "not a JPEG"),
        (jpeg_bytes(), "sensor timeout", "sensor timeout"),
    ],
)
def test_bad_frames_become_failed_media_not_crashes(store, jpeg, error, reason):
    event = str(uuid.uuid4())
    item = frame_item(event, 0, jpeg, error)
    result = store.commit([item])
    assert result.failed_media == [item.media_id]
    (media,) = rows(store, "SELECT * FROM media")
    assert media["state"] == "failed" and reason in media["error"]
    if jpeg:  # the bytes are kept for inspection, never under the media tree
        assert (store.data_dir / media["path"]).read_bytes() == jpeg
        assert media["path"].startswith("failed/")
    assert rows(store, "SELECT COUNT(*) FROM outbox WHERE kind='media'")[0][0] == 0


def test_reconcile_deletes_part_files_reregisters_orphans_and_flags_missing(tmp_path):
    settings = trap_settings(tmp_path)
    s = MediaStore(settings)
    s.open()
    event = str(uuid.uuid4())
    kept, lost = frame_item(event, 0, jpeg_bytes(seed=1)), frame_item(event, 1, jpeg_bytes(seed=2))
    s.commit([kept, lost])
    orphan = frame_item(event, 2, jpeg_bytes(seed=3))
    # A crash after the file reached its name but before its row was committed:
    s._write_file(orphan)
    s.close()
    day = settings.storage.data_dir / "media/2026/11/27"
    (day / "half-written.jpg.part").write_bytes(b"\xff\xd8 partial")
    (day / f"{lost.media_id}.jpg").unlink()

    again = MediaStore(settings)
    again.open()
    try:
        assert not list(day.glob("*.part"))
        states = dict(rows(again, "SELECT media_id, state FROM media"))
        assert states[kept.media_id] == "stored"
        assert states[lost.media_id] == "missing"
        assert states[orphan.media_id] == "stored"
        (recovered,) = rows(again, "SELECT * FROM media WHERE recovered = 1")
        assert recovered["media_id"] == orphan.media_id
        assert recovered["event_id"] == event and recovered["seq"] == 2
        counters = dict(rows(again, "SELECT name, value FROM counters"))
        assert counters == {
            "parts_deleted": 1,
            "recovered_files": 1,
            "missing_files": 1,
            "events_closed": 1,
        }
        # The event cut off by the "crash" is closed and its metadata queued.
        (ev,) = rows(again, "SELECT state FROM events")
        assert ev["state"] == "closed"
        assert rows(again, "SELECT COUNT(*) FROM outbox WHERE kind='metadata'")[0][0] == 1
    finally:
        again.close()


def test_a_file_without_exif_record_is_kept_and_marked(tmp_path):
    settings = trap_settings(tmp_path)
    day = settings.storage.data_dir / "media/2026/01/02"
    day.mkdir(parents=True)
    stranger = day / f"{uuid.uuid4()}.jpg"
    stranger.write_bytes(jpeg_bytes())
    s = MediaStore(settings)
    s.open()
    try:
        (media,) = rows(s, "SELECT * FROM media")
        assert media["state"] == "stored" and media["recovered"] == 1
        assert media["clock_source"] == "file-mtime" and "without EXIF" in media["error"]
        # ...and it still reaches the cloud: its metadata is a valid wire message, saying
        # plainly that what triggered it is unknown.
        assert s.db is not None
        meta = capture_meta(s.db, "trap-1", "meta:x", media["event_id"], vision=False)
        assert meta.event.trigger_source == "unknown"
        assert meta.media[0].media_id == media["media_id"]
    finally:
        s.close()


def test_a_newer_schema_is_refused_with_a_clear_message(tmp_path):
    path = tmp_path / DB_NAME
    Database(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(SchemaTooNew, match="newer than this camtrap"):
        Database(path)
    with pytest.raises(SchemaTooNew):
        open_readonly(path)


def test_migrations_run_once_and_reopening_keeps_data(tmp_path):
    path = tmp_path / DB_NAME
    db = Database(path)
    with db.write() as conn:
        conn.execute("INSERT INTO counters VALUES ('x', 1)")
    db.close()
    db = Database(path)
    assert db.schema_version() == SCHEMA_VERSION
    with db.read() as conn:
        assert conn.execute("SELECT value FROM counters").fetchone()[0] == 1
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    db.close()


def test_migration_3_moves_upload_facts_onto_their_rows_and_waiting_into_states(tmp_path):
    """A database written by the previous camtrap (schema 2): upload facts were only in done
    outbox rows, and a waiting item was a pending row with the reason in ``last_error``."""
    from device.store.events import Events
    from device.store.media import Media
    from device.store.schema import MIGRATIONS

    path = tmp_path / DB_NAME
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    old.execute("INSERT INTO schema_version VALUES (2)")
    for script in MIGRATIONS[:2]:
        old.executescript(script)
    for event_id in ("sent", "unclassified"):
        old.execute(
            "INSERT INTO events (event_id, deployment_id, capture_method, trigger_source,"
            " started_at, clock_source, clock_synced) VALUES (?, 'd', 'activityDetection',"
            " 'pir', '2026-05-01T21:30:00+00:00', 'rtc', 1)",
            (event_id,),
        )
    for media_id, event_id in (("m-sent", "sent"), ("m-waiting", "unclassified")):
        old.execute(
            "INSERT INTO media (media_id, event_id, seq, captured_at, capture_method,"
            " trigger_source, clock_source, clock_synced, state) VALUES (?, ?, 0,"
            " '2026-05-01T21:30:00+00:00', 'activityDetection', 'pir', 'rtc', 1, 'stored')",
            (media_id, event_id),
        )
    outbox = [
        ("meta:sent", "metadata", "sent", "done", 100.0, None),
        ("media:m-sent", "media", "m-sent", "done", 200.0, None),
        ("thumb:m-sent", "thumbnail", "m-sent", "done", None, None),  # done before done_at
        ("meta:unclassified", "metadata", "unclassified", "pending", None,
         "waiting for its event to be classified"),
        ("media:m-waiting", "media", "m-waiting", "pending", None,
         "waiting for its event's metadata to be acknowledged"),
    ]  # fmt: skip
    old.executemany(
        "INSERT INTO outbox (item_id, kind, ref_id, priority, state, created_at, done_at,"
        " last_error) VALUES (?, ?, ?, 0, ?, 50.0, ?, ?)",
        [(i, k, r, st, done, err) for i, k, r, st, done, err in outbox],
    )
    old.commit()
    old.close()

    db = Database(path)
    try:
        assert db.schema_version() == SCHEMA_VERSION >= 3
        events = {e.event_id: e.uploaded_at for e in Events(db).uploads()}
        assert events == {"sent": 100.0, "unclassified": None}
        media = Media(db).get_many(["m-sent", "m-waiting"])
        assert (media["m-sent"].uploaded_at, media["m-sent"].thumb_uploaded_at) == (200.0, 50.0)
        assert (media["m-waiting"].uploaded_at, media["m-waiting"].thumb_uploaded_at) == (
            None,
            None,
        )
        with db.read() as conn:
            states = {
                r[0]: (r[1], r[2])
                for r in conn.execute("SELECT item_id, state, last_error FROM outbox")
            }
        assert states["meta:unclassified"] == ("waiting_classification", None)
        assert states["media:m-waiting"] == ("waiting_metadata", None)
        assert states["meta:sent"] == ("done", None)
    finally:
        db.close()


def test_a_vanished_data_dir_spools_to_fallback_and_imports_when_back(tmp_path):
    settings = trap_settings(tmp_path)
    clock = ManualClock()
    s = MediaStore(settings, monotonic=clock.monotonic)
    s.open()
    event = str(uuid.uuid4())
    first = frame_item(event, 0, jpeg_bytes(seed=1))
    s.commit([first])
    data_dir = settings.storage.data_dir
    data_dir.rename(tmp_path / "unplugged")
    during = [frame_item(event, 1, jpeg_bytes(seed=2)), frame_item(event, 2, b"")]
    result = s.commit([*during, EventClosed(event, first.captured_at, 3, ACTIVITY)])
    assert result.spooled == 3 and s.mode == "fallback"
    assert not data_dir.exists(), "the store must not recreate a vanished data dir"
    (tmp_path / "unplugged").rename(data_dir)
    s.maybe_recover()
    assert s.mode == "fallback", "not probed again before the probe interval"
    clock.advance(settings.storage.probe_interval_s)
    s.maybe_recover()
    try:
        assert s.mode == "primary"
        states = dict(rows(s, "SELECT media_id, state FROM media"))
        assert states == {
            first.media_id: "stored",
            during[0].media_id: "stored",
            during[1].media_id: "failed",
        }
        assert rows(s, "SELECT state FROM events")[0]["state"] == "closed"
        # Its metadata is owed to the cloud, as for an event closed straight on the card.
        assert rows(s, "SELECT ref_id FROM outbox WHERE kind = 'metadata'")[0][0] == event
        assert s.spool_count() == 0
        stored = rows(s, "SELECT path, sha256 FROM media WHERE state='stored'")
        for row in stored:
            assert files.sha256_file(data_dir / row["path"]) == row["sha256"]
    finally:
        s.close()


def test_a_full_fallback_spool_keeps_metadata_and_says_so(tmp_path):
    settings = trap_settings(tmp_path, storage={"fallback_max_bytes": 1000})
    clock = ManualClock()
    s = MediaStore(settings, monotonic=clock.monotonic)
    s.open()
    settings.storage.data_dir.rename(tmp_path / "gone")
    event = str(uuid.uuid4())
    big = frame_item(event, 0, jpeg_bytes(width=320, height=240))
    assert s.commit([big]).spooled == 1
    (tmp_path / "gone").rename(settings.storage.data_dir)
    clock.advance(settings.storage.probe_interval_s)
    s.maybe_recover()
    try:
        (media,) = rows(s, "SELECT state, error FROM media")
        assert media["state"] == "failed" and "fallback spool full" in media["error"]
    finally:
        s.close()
