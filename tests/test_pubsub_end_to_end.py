"""The Pub/Sub transport and the Pub/Sub ingest, on the real emulator."""

from __future__ import annotations

import os
import time
import uuid

import pytest

from cloud_stub.ingest.core import Ingestor
from cloud_stub.ingest.pubsub_source import PubSubIngest
from device import protocol
from device.protocol import Telemetry
from device.uplink.pubsub import PubSubTransport
from tests.support.messages import capture
from tests.support.uplink import collect_until, completed, query

# Fixtures (real services) from tests/support, whatever conftest.py lists.
pytest_plugins = ["tests.support.pubsub_emulator"]
pytestmark = pytest.mark.timeout(120)

DEVICE = "trap-ps"


@pytest.fixture
def pubsub_world(pubsub_env, tmp_path):
    """A fresh topic and subscription, a device link and an ingest; all torn down afterwards."""
    from google.cloud import pubsub_v1

    topic_id, sub_id = f"up-{uuid.uuid4().hex[:8]}", f"ingest-{uuid.uuid4().hex[:8]}"
    admin_pub = pubsub_v1.PublisherClient()
    topic = admin_pub.create_topic(name=f"projects/{pubsub_env.project}/topics/{topic_id}").name
    admin_sub = pubsub_v1.SubscriberClient()
    sub = admin_sub.create_subscription(
        name=f"projects/{pubsub_env.project}/subscriptions/{sub_id}",
        topic=topic,
        ack_deadline_seconds=10,
    ).name
    admin_sub.close()
    ingestor = Ingestor(tmp_path / "cloud")
    ingest = PubSubIngest(ingestor, sub, retry_delay_s=0)
    link = PubSubTransport(
        DEVICE, project=pubsub_env.project, topic=topic_id, max_payload_cap=9 * 1024 * 1024
    )
    yield link, ingest, tmp_path / "cloud"
    link.close()
    ingest.subscriber.close()
    ingestor.close()
    admin_pub.delete_topic(topic=topic)


def pull_until(ingest: PubSubIngest, root, sql: str, expected, timeout: float = 30.0):
    """Pull batches until the query returns ``expected`` or the time bound passes."""
    deadline = time.monotonic() + timeout
    while query(root, sql) != expected and time.monotonic() < deadline:
        ingest.pull_once(timeout=1.0)
    return query(root, sql)


def media_items(link, meta, files, kind="full"):
    for media, data in zip(meta.media, files, strict=True):
        yield from protocol.split_media(
            data,
            max_payload_bytes=link.max_payload_bytes,
            device_id=DEVICE,
            item_id=f"{kind}:{media.media_id}",
            media_id=media.media_id,
            kind=kind,
        )


def test_publish_futures_become_acks_and_ingest_stores_everything(pubsub_world):
    link, ingest, root = pubsub_world
    big = os.urandom(6 * 1024 * 1024)  # over the emulator's default 4 MiB pull limit
    meta, files = capture(DEVICE, full_files=[os.urandom(200_000), big])
    link.connect(timeout=20)
    assert link.max_payload_bytes <= 10_000_000

    link.send(meta)
    chunks = list(media_items(link, meta, files))
    for chunk in chunks:
        link.send(chunk)
    items = {meta.item_id, *(c.item_id for c in chunks)}
    events = collect_until(link, completed(items), timeout=30)
    assert {e.item_id for e in events if e.chunk == "complete"} == items
    assert not [e for e in events if e.type == "error"]

    rows = pull_until(
        ingest, root, "SELECT count(*) FROM media WHERE file_path IS NOT NULL", [(2,)]
    )
    assert rows == [(2,)]
    stored = dict(query(root, "SELECT media_id, file_path FROM media"))
    for media, data in zip(meta.media, files, strict=True):
        assert (root / "media" / stored[media.media_id]).read_bytes() == data


def test_duplicate_publishes_are_stored_once(pubsub_world):
    link, ingest, root = pubsub_world
    meta, files = capture(DEVICE, full_files=[os.urandom(30_000)])
    tel = Telemetry(device_id=DEVICE, item_id="tel:1", sent_at=protocol.utc_now())
    link.connect(timeout=20)
    for _ in range(3):  # as if the library retried, or the device crashed before marking done
        link.send(meta)
        link.send(tel)
        for chunk in media_items(link, meta, files):
            link.send(chunk).wait(10)
    assert pull_until(ingest, root, "SELECT count(*) FROM received", [(2,)]) == [(2,)]
    # Let every copy come in before counting what was stored.
    counters = {}
    deadline = time.monotonic() + 20
    while counters.get("duplicates.capture", 0) < 2 and time.monotonic() < deadline:
        ingest.pull_once(timeout=1.0)
        counters = ingest.ingestor.store.counters()
    assert counters["stored.capture"] == 1
    assert counters["duplicates.capture"] == 2
    assert counters["stored.full"] == 1
    assert query(root, "SELECT count(*) FROM events") == [(1,)]
    assert query(root, "SELECT count(*) FROM telemetry") == [(1,)]
    assert len(list((root / "media").rglob("*.jpg"))) == 1


def test_a_chunk_that_overtakes_its_metadata_is_redelivered_not_lost(pubsub_world):
    link, ingest, root = pubsub_world
    meta, files = capture(DEVICE, full_files=[os.urandom(5000)])
    link.connect(timeout=20)
    (chunk,) = media_items(link, meta, files)
    link.send(chunk).wait(10)
    # Only the chunk is there: ingest must neither store it nor acknowledge it to Pub/Sub.
    deadline = time.monotonic() + 10
    while ingest.pull_once(timeout=1.0) == 0 and time.monotonic() < deadline:
        pass
    assert query(root, "SELECT count(*) FROM media") == [(0,)]
    link.send(meta).wait(10)
    rows = pull_until(
        ingest, root, "SELECT count(*) FROM media WHERE file_path IS NOT NULL", [(1,)]
    )
    assert rows == [(1,)]
    assert ingest.ingestor.store.counters()["rejected.unknown_media"] >= 1


def test_a_missing_topic_is_a_clear_connect_error(pubsub_env):
    from device.uplink.transport import TransportError

    link = PubSubTransport(DEVICE, project=pubsub_env.project, topic="no-such-topic")
    with pytest.raises(TransportError, match="no-such-topic"):
        link.connect(timeout=10)
    assert not link.is_connected
    link.close()


def test_the_pubsub_link_is_built_from_the_agents_configuration(pubsub_env):
    from device.config import Settings

    settings = Settings(
        device={"id": DEVICE},
        uplink={"transport": "pubsub", "pubsub": {"project": pubsub_env.project, "topic": "t"}},
    )
    link = PubSubTransport.from_settings(settings)
    assert (link.project, link.topic, link.device_id) == (pubsub_env.project, "t", DEVICE)
    assert link.max_payload_bytes == settings.uplink.max_payload_bytes
