"""Ingest with its media in Google Cloud Storage (the real gcp-storage-emulator), rows in
PostgreSQL: files land in the bucket, and an object store that cannot be reached holds the acks
back until it is back, losing nothing."""

from __future__ import annotations

import hashlib
import os

import pytest

from cloud_stub.ingest.core import Ingestor
from cloud_stub.ingest.store import StoreError
from cloud_stub.media import MediaUnavailable
from device.contracts.exitcodes import Exit
from tests.support.messages import capture
from tests.test_ingest_hostile import chunks_of, deliver

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def bucket_ingest(tmp_path, gcs_bucket, postgres_db):
    waits: list[float] = []
    spec = f"gs://{gcs_bucket.name}/fleet"
    ingest = Ingestor(
        tmp_path / "cloud",
        db_url=postgres_db,
        media=spec,
        retry_wait=waits.append,
        retry_schedule=(0.5,),
    )
    yield ingest, waits
    ingest.close()


def test_received_files_are_stored_in_the_bucket_under_their_relative_path(bucket_ingest, tmp_path):
    ingest, _ = bucket_ingest
    data = os.urandom(20_000)
    meta, _ = capture("trap-01", full_files=[data])
    deliver(ingest, meta)
    replies = [
        r for c in chunks_of(meta, data) for r in deliver(ingest, c, "trap-01", "media").replies
    ]
    assert replies[-1].chunk == "complete"
    (row,) = ingest.store.rows("media")
    assert row["sha256"] == hashlib.sha256(data).hexdigest()
    with ingest.store.media.open(row["file_path"]) as handle:
        assert handle.read() == data
    assert ingest.store.media.url(row["file_path"]).startswith("gs://")
    assert not (tmp_path / "cloud" / "media").exists(), "nothing is written locally"


def test_a_store_keeps_the_media_location_it_was_first_given(bucket_ingest, tmp_path):
    ingest, _ = bucket_ingest
    url = ingest.store._url
    # A later worker given no --media finds the bucket from the database ...
    again = Ingestor(tmp_path / "cloud", db_url=url)
    assert again.store.media.name == "gcs"
    again.close()
    # ... and one given another location is refused in one line, rather than splitting files.
    with pytest.raises(StoreError) as refused:
        Ingestor(tmp_path / "cloud", db_url=url, media="local")
    assert refused.value.code == Exit.USAGE
    assert "keeps its media in gs://" in refused.value.message


def test_an_unreachable_object_store_holds_back_the_ack_and_loses_nothing(
    bucket_ingest, gcs_emulator
):
    ingest, waits = bucket_ingest
    data = os.urandom(12_000)
    meta, _ = capture("trap-01", full_files=[data])
    deliver(ingest, meta)
    chunks = chunks_of(meta, data)
    assert len(chunks) >= 3
    for chunk in chunks[:-1]:
        assert deliver(ingest, chunk, "trap-01", "media").rejected is None

    gcs_emulator.stop()
    try:
        with pytest.raises(MediaUnavailable) as down:
            deliver(ingest, chunks[-1], "trap-01", "media")
    finally:
        gcs_emulator.start()
    assert down.value.code == Exit.UNAVAILABLE
    assert waits == [0.5], "the batch was retried before giving up"
    # Nothing was committed for the failed batch: no file recorded, the chunks still held.
    (row,) = ingest.store.rows("media")
    assert row["file_path"] is None
    assert len(ingest.store.rows("partial_chunks")) == len(chunks) - 1

    # The device resends the chunk it never got an ack for; now the file is whole.
    outcome = deliver(ingest, chunks[-1], "trap-01", "media")
    assert [r.chunk for r in outcome.replies][-1] == "complete"
    (row,) = ingest.store.rows("media")
    with ingest.store.media.open(row["file_path"]) as handle:
        assert hashlib.sha256(handle.read()).hexdigest() == row["sha256"]
    assert ingest.store.rows("partial_chunks") == []


@pytest.fixture
def bucket_store(tmp_path, gcs_bucket, postgres_db):
    """Two reviewed-by-machine fox events whose files are in the bucket, rows in PostgreSQL."""
    from tests.test_readers_postgres import _run, _with_event_verdict

    root = tmp_path / "cloud"
    spec = f"gs://{gcs_bucket.name}/fleet"
    ingest = Ingestor(root, db_url=postgres_db, media=spec)
    files = {}
    try:
        for _ in range(2):
            meta, frames = capture("trap-01", frames=1, species="Vulpes vulpes")
            meta = _with_event_verdict(meta, "Vulpes vulpes")
            assert deliver(ingest, meta).rejected is None
            for chunk in chunks_of(meta, frames[0]):
                assert deliver(ingest, chunk, "trap-01", "media").rejected is None
            files[meta.media[0].media_id] = frames[0]
    finally:
        ingest.close()
    located = _run(
        "export", "locate", "dep-1", "--root", root, "--db", postgres_db,
        "--latitude", "51.5", "--longitude", "-0.1",
    )  # fmt: skip
    assert located == 0
    return root, postgres_db, gcs_bucket.name, files


def test_the_export_points_at_the_bucket_instead_of_copying(bucket_store, tmp_path):
    from tests.test_readers_postgres import _run, _table

    root, url, bucket, files = bucket_store
    out = tmp_path / "package"
    assert _run("export", "camtrap-dp", out, "--root", root, "--db", url) == 0
    media = _table(out, "media")
    assert sorted(m["mediaID"] for m in media) == sorted(files)
    for m in media:
        assert m["filePath"] == (
            f"https://storage.googleapis.com/{bucket}/fleet/dep-1/{m['mediaID']}.jpg"
        )
    assert not (out / "media").exists()


def test_the_review_page_serves_files_from_the_bucket(bucket_store):
    from cloud_stub.review.app import ReviewConfig, create_app
    from tests.support.browser import add_users
    from tests.test_readers_postgres import _login

    root, url, _, files = bucket_store
    add_users(root)
    client = _login(create_app(ReviewConfig(root, secure_cookies=False, db_url=url)), "vera")
    for media_id, data in files.items():
        answer = client.get(f"/media/{media_id}/full")
        assert answer.status_code == 200
        assert answer.data == data
    assert client.get("/media/no-such-id/full").status_code == 404


def test_handoff_and_training_read_the_bucket(bucket_store):
    from cloud_stub.handoff.stub_source import stub_records
    from cloud_stub.ingest.opening import open_store_db, open_store_media
    from cloud_stub.training.ingest_source import DOWNLOADS, _local_copy

    root, url, bucket, files = bucket_store
    records = stub_records(root, include_machine=True, url=url)
    assert sorted(r.source for r in records) == sorted(
        f"gs://{bucket}/fleet/dep-1/{media_id}.jpg" for media_id in files
    )
    db = open_store_db(root, url=url)
    try:
        store = open_store_media(db, root)
    finally:
        db.close()
    for media_id, data in files.items():
        copy = _local_copy(store, f"dep-1/{media_id}.jpg", root)
        assert copy == root / DOWNLOADS / "dep-1" / f"{media_id}.jpg"
        assert copy.read_bytes() == data
    assert _local_copy(store, "dep-1/never-uploaded.jpg", root) is None
