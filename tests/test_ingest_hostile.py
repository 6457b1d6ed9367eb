"""Ingest rejects what it must, with a reason, stores nothing wrongly, and never falls over."""

from __future__ import annotations

import hashlib
import json
import os
import struct

import pytest

from cloud_stub.ingest.core import Incoming, Ingestor
from device import protocol
from device.protocol import CHUNK_MAGIC, Telemetry
from tests.support.messages import capture
from tests.support.uplink import collect_until, completed, device_link, query, running_ingest

# Fixtures (real services) from tests/support, whatever conftest.py lists.
pytest_plugins = ["tests.support.broker"]
pytestmark = pytest.mark.timeout(60)

DEVICE = "trap-01"


@pytest.fixture
def ingest(tmp_path, store_url):
    ingestor = Ingestor(tmp_path / "cloud", max_message_bytes=1024 * 1024, db_url=store_url)
    yield ingestor
    ingestor.close()


def deliver(ingest: Ingestor, message_or_bytes, device: str = DEVICE, subtopic: str | None = None):
    payload = (
        message_or_bytes
        if isinstance(message_or_bytes, bytes)
        else protocol.encode(message_or_bytes)
    )
    topic = f"camtrap/{device}/up/{subtopic or 'meta'}"
    return ingest.handle(Incoming(topic, device, subtopic, payload))


def chunks_of(meta, data: bytes, kind: str = "full", limit: int = 4096):
    media_id = meta.media[0].media_id
    return list(
        protocol.split_media(
            data,
            max_payload_bytes=limit,
            device_id=meta.device_id,
            item_id=f"{kind}:{media_id}",
            media_id=media_id,
            kind=kind,
        )
    )


def rejections(ingest: Ingestor) -> list[str]:
    return [r["reason"] for r in ingest.store.rows("rejections")]


def stored_counts(ingest: Ingestor) -> tuple[int, int, int]:
    db = ingest.store.db
    return tuple(
        db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
        for t in ("events", "telemetry", "received")
    )


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "malformed"),
        (b"\x00\x01\x02binary junk", "malformed"),
        (b"[1, 2, 3]", "malformed"),
        (json.dumps({"type": "telemetry", "deviceID": DEVICE}).encode(), "unsupported_version"),
        (
            # Telemetry speaks v1 to v3 (v3: the power figures); v4 is from a later camtrap.
            json.dumps({"v": 4, "type": "telemetry", "deviceID": DEVICE}).encode(),
            "unsupported_version",
        ),
        (json.dumps({"v": 1, "type": "selfie", "deviceID": DEVICE}).encode(), "unknown_type"),
        (
            json.dumps({"v": 1, "type": "telemetry", "deviceID": DEVICE, "itemID": "t"}).encode(),
            "invalid_fields",
        ),
        (b"{" + b" " * (2 * 1024 * 1024) + b"}", "too_large"),
        (CHUNK_MAGIC + struct.pack(">H", 60000) + b"{}", "malformed"),
    ],
    ids=[
        "broken-json",
        "binary",
        "not-an-object",
        "no-version",
        "version-4",
        "unknown-type",
        "missing-field",
        "oversized",
        "bad-frame",
    ],
)
def test_bad_payloads_are_rejected_with_their_reason_and_store_nothing(ingest, payload, reason):
    outcome = deliver(ingest, payload, subtopic="telemetry")
    assert outcome.rejected == reason
    assert outcome.replies == []
    assert rejections(ingest) == [reason]
    assert ingest.store.counters() == {f"rejected.{reason}": 1}
    assert stored_counts(ingest) == (0, 0, 0)


def test_a_message_whose_payload_names_another_device_is_unauthorised(ingest):
    meta, _ = capture("trap-02")
    outcome = deliver(ingest, meta, device=DEVICE)
    assert outcome.rejected == "unauthorised"
    assert stored_counts(ingest) == (0, 0, 0)


def test_a_device_cannot_claim_ids_that_belong_to_another_device(ingest, store_url):
    meta, _ = capture("trap-02")
    assert deliver(ingest, meta, device="trap-02").rejected is None
    hijack = meta.model_copy(update={"device_id": DEVICE, "item_id": "capture:hijack"})
    outcome = deliver(ingest, hijack)
    assert outcome.rejected == "unauthorised"
    assert query(ingest.store.root, "SELECT device_id FROM events", url=store_url) == [("trap-02",)]


def test_a_message_on_the_wrong_subtopic_is_rejected(ingest):
    msg = Telemetry(device_id=DEVICE, item_id="tel:1", sent_at=protocol.utc_now())
    assert deliver(ingest, msg, subtopic="meta").rejected == "wrong_topic"
    assert stored_counts(ingest) == (0, 0, 0)


def test_a_chunk_whose_bytes_do_not_match_its_sha256_is_refused_and_asked_for_again(ingest):
    data = os.urandom(10_000)
    meta, _ = capture(DEVICE, full_files=[data])
    deliver(ingest, meta)
    chunk = chunks_of(meta, data)[1]
    frame = bytearray(protocol.encode(chunk))
    frame[-1] ^= 0xFF  # one flipped bit in transit
    outcome = deliver(ingest, bytes(frame), subtopic="media")
    assert outcome.rejected == "chunk_sha256_mismatch"
    (reply,) = outcome.replies
    assert (reply.type, reply.item_id, reply.retryable) == ("error", chunk.item_id, True)
    assert ingest.store.rows("partial_chunks") == []


def test_a_chunk_for_an_unknown_media_id_is_refused_and_nothing_is_kept(ingest):
    data = os.urandom(5000)
    meta, _ = capture(DEVICE, full_files=[data])  # its metadata is never delivered
    outcome = deliver(ingest, chunks_of(meta, data)[0], subtopic="media")
    assert outcome.rejected == "unknown_media"
    assert outcome.retry_later
    assert [r.reason for r in outcome.replies] == ["unknown_media"]
    assert ingest.store.rows("partial_chunks") == []
    assert not list(ingest.store.media_root.iterdir())


def test_chunks_that_do_not_add_up_to_the_announced_file_are_discarded(ingest, store_url):
    data = os.urandom(9000)
    meta, _ = capture(DEVICE, full_files=[data])
    deliver(ingest, meta)
    # Each chunk is self-consistent, but the whole-file hash they announce is a lie.
    liar = [
        c.model_copy(update={"sha256": hashlib.sha256(b"other").hexdigest()})
        for c in chunks_of(meta, data, kind="thumbnail")
    ]
    outcomes = [deliver(ingest, c, subtopic="media") for c in liar]
    assert outcomes[-1].rejected == "file_sha256_mismatch"
    assert outcomes[-1].replies[-1].restart is True
    assert query(ingest.store.root, "SELECT thumbnail_path FROM media", url=store_url) == [(None,)]
    assert ingest.store.rows("partial_chunks") == []


def test_a_full_file_that_differs_from_its_metadata_is_refused(ingest):
    data = os.urandom(3000)
    meta, _ = capture(DEVICE, full_files=[data])
    deliver(ingest, meta)
    other = os.urandom(3000)
    outcome = deliver(ingest, chunks_of(meta, other)[0], subtopic="media")
    assert outcome.rejected == "sha256_mismatch"
    assert outcome.replies[0].retryable is False


def test_a_flood_of_duplicates_is_stored_once_and_each_copy_is_acknowledged(ingest, store_url):
    data = os.urandom(20_000)
    meta, _ = capture(DEVICE, full_files=[data])
    chunks = chunks_of(meta, data)
    replies = []
    for _ in range(25):
        replies += deliver(ingest, meta).replies
        for chunk in chunks:
            replies += deliver(ingest, chunk, subtopic="media").replies
    root = ingest.store.root
    assert query(root, "SELECT count(*) FROM events", url=store_url) == [(1,)]
    assert query(root, "SELECT count(*) FROM observations", url=store_url) == [(1,)]
    (path,) = query(root, "SELECT file_path FROM media", url=store_url)[0]
    assert (root / "media" / path).read_bytes() == data
    assert len(list((root / "media").rglob("*.jpg"))) == 1
    counters = ingest.store.counters()
    assert counters["stored.capture"] == 1
    assert counters["stored.full"] == 1
    assert counters["duplicates.capture"] == 24
    assert not [r for r in replies if r.type == "error"]
    completes = [r for r in replies if r.chunk == "complete"]
    # Every copy is answered (a late chunk of a stored file gets "complete" straight away) ...
    assert sum(r.item_id == meta.item_id for r in completes) == 25
    assert sum(r.item_id == chunks[0].item_id for r in completes) == 1 + 24 * len(chunks)
    # ... but only the first of each is news.
    assert sorted(r.item_id for r in completes if not r.duplicate) == sorted(
        [meta.item_id, chunks[0].item_id]
    )


def test_partial_chunks_survive_an_ingest_restart(tmp_path, store_url):
    data = os.urandom(12_000)
    meta, _ = capture(DEVICE, full_files=[data])
    first = Ingestor(tmp_path / "cloud", db_url=store_url)
    deliver(first, meta)
    chunks = chunks_of(meta, data)
    assert len(chunks) >= 3
    for chunk in chunks[:2]:
        deliver(first, chunk, subtopic="media")
    first.close()

    second = Ingestor(tmp_path / "cloud", db_url=store_url)
    try:
        outcomes = [deliver(second, c, subtopic="media") for c in chunks[2:]]
    finally:
        second.close()
    assert outcomes[-1].replies[-1].chunk == "complete"
    (path,) = query(tmp_path / "cloud", "SELECT file_path FROM media", url=store_url)[0]
    assert (tmp_path / "cloud" / "media" / path).read_bytes() == data


def test_chunks_an_older_ingest_kept_on_disk_are_adopted_not_lost(tmp_path):
    """Before chunks lived in the database they were files under ``<root>/partial/``; the
    device resumes after acknowledged chunks, so those must still count."""
    data = os.urandom(12_000)
    meta, _ = capture(DEVICE, full_files=[data])
    root = tmp_path / "cloud"
    first = Ingestor(root)
    deliver(first, meta)
    first.close()
    chunks = chunks_of(meta, data)
    head = chunks[0]
    upload = (
        root
        / "partial"
        / (f"{head.media_id}.{head.kind}.{head.sha256}.{head.total_size}.{head.chunk_size}")
    )
    upload.mkdir(parents=True)
    (upload / "0000000.chunk").write_bytes(head.data)

    second = Ingestor(root)
    try:
        assert not (root / "partial").exists()
        outcomes = [deliver(second, c, subtopic="media") for c in chunks[1:]]
    finally:
        second.close()
    assert outcomes[-1].replies[-1].chunk == "complete"
    (path,) = query(root, "SELECT file_path FROM media")[0]
    assert (root / "media" / path).read_bytes() == data


def test_hostile_traffic_over_mqtt_does_not_stop_ingest(broker, tmp_path):
    root = tmp_path / "cloud"
    with running_ingest(broker, root):
        link = device_link(broker, DEVICE)
        link.connect(timeout=10)
        try:
            for junk in (b"{oops", b'{"v": 9, "type": "capture"}', os.urandom(300)):
                link.client.publish(protocol.up_topic(DEVICE, "meta"), junk, qos=1)
            link.send(Telemetry(device_id=DEVICE, item_id="tel:after", sent_at=protocol.utc_now()))
            assert collect_until(link, completed({"tel:after"}))
        finally:
            link.close()
    reasons = [r[0] for r in query(root, "SELECT reason FROM rejections ORDER BY id")]
    assert reasons == ["malformed", "unsupported_version", "malformed"]
    assert query(root, "SELECT item_id FROM telemetry") == [("tel:after",)]
