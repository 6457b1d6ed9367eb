"""The drain loop over the Pub/Sub transport, against the real emulator and the real ingest."""

from __future__ import annotations

import time
import uuid

import pytest

from cloud_stub.ingest.core import Ingestor
from cloud_stub.ingest.pubsub_source import PubSubIngest
from device.uplink.drain import Drain
from device.uplink.pubsub import PubSubTransport
from tests.support.trap_db import classify, open_store, queue_captures
from tests.support.uplink import query
from tests.support.world import trap_settings

pytest_plugins = ["tests.support.pubsub_emulator"]
pytestmark = pytest.mark.timeout(120)

DEVICE = "test-trap"


def test_a_queued_trap_drains_through_pubsub_and_ingest_stores_it_all(pubsub_env, tmp_path):
    from google.cloud import pubsub_v1

    project = pubsub_env.project
    topic_id, sub_id = f"up-{uuid.uuid4().hex[:8]}", f"ingest-{uuid.uuid4().hex[:8]}"
    admin = pubsub_v1.PublisherClient()
    topic = admin.create_topic(name=f"projects/{project}/topics/{topic_id}").name
    subs = pubsub_v1.SubscriberClient()
    sub = subs.create_subscription(
        name=f"projects/{project}/subscriptions/{sub_id}", topic=topic, ack_deadline_seconds=10
    ).name
    subs.close()

    store = open_store(trap_settings(tmp_path / "trap"))
    bursts = queue_captures(store, 4, frames=2, size=(640, 480))
    for burst in bursts:
        classify(store, burst)
    ingestor = Ingestor(tmp_path / "cloud")
    ingest = PubSubIngest(ingestor, sub, retry_delay_s=0)
    link = PubSubTransport(DEVICE, project=project, topic=topic_id, max_payload_cap=64 * 1024)
    drain = Drain(store.db, link, data_dir=store.data_dir, device_id=DEVICE, vision=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            drain.step()
            with store.db.read() as conn:
                left = conn.execute(
                    "SELECT count(*) FROM outbox WHERE state IN ('pending', 'inflight')"
                ).fetchone()[0]
            if not left:
                break
        drain.close()
        with store.db.read() as conn:
            states = {r[0] for r in conn.execute("SELECT state FROM outbox")}
            device_media = dict(conn.execute("SELECT media_id, sha256 FROM media").fetchall())
        assert states == {"done"}
        # Done on the device means Pub/Sub holds it; now let ingest pull everything.
        want = [(len(device_media), len(device_media))]
        sql = "SELECT count(file_path), count(thumbnail_path) FROM media"
        deadline = time.monotonic() + 60
        while query(tmp_path / "cloud", sql) != want and time.monotonic() < deadline:
            ingest.pull_once(timeout=1.0)
        assert query(tmp_path / "cloud", sql) == want
        rows = query(tmp_path / "cloud", "SELECT media_id, sha256 FROM media")
        assert dict(rows) == device_media
    finally:
        link.close()
        ingest.subscriber.close()
        ingestor.close()
        store.close()
        admin.delete_topic(topic=topic)
