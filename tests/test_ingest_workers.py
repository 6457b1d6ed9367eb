"""Several ingest workers on one PostgreSQL store share the stream and store each item once.

MQTT: three ``camtrap-cloud ingest`` processes in one shared subscription
(``$share/ingest/camtrap/+/up/#``) on a real mosquitto. Pub/Sub: two processes pulling one
subscription on the real emulator. ``--workers N`` starts N of them from one command.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from device import protocol
from device.protocol import Telemetry
from tests.support.broker import INGEST_USER, Broker
from tests.support.uplink import device_link, wait_until
from tests.support.workers import (
    SHARE_GROUP,
    PgStore,
    ResendingDevice,
    backlog,
    start_worker,
)

pytestmark = pytest.mark.timeout(120)

DEVICE = "trap-07"


def stored_files_match(root: Path, store: PgStore, files: dict[str, bytes]) -> bool:
    """Every file is in the media tree with the bytes the device has."""
    paths = dict(store.rows("SELECT media_id, file_path FROM media"))
    return all(
        paths.get(media_id)
        and hashlib.sha256((root / "media" / paths[media_id]).read_bytes()).hexdigest()
        == hashlib.sha256(data).hexdigest()
        for media_id, data in files.items()
    )


def test_a_device_in_a_share_group_of_its_own_reads_nothing_of_another_devices_uplink(broker):
    """mosquitto's ACL file checks reads at delivery, shared subscriptions included: a device
    may subscribe ``$share/<g>/camtrap/+/up/#`` (SUBACK granted) but gets nothing through it,
    while the ingest identity in a group gets everything."""
    own_down = protocol.down_topic(DEVICE, "ack")
    spy = _subscriber(broker, DEVICE, [f"$share/{SHARE_GROUP}-spy/camtrap/+/up/#", own_down])
    cloud = _subscriber(broker, INGEST_USER, [f"$share/{SHARE_GROUP}/camtrap/+/up/#"])
    link = device_link(broker, "trap-08")
    try:
        link.connect(timeout=10)
        for number in range(5):
            link.send(
                Telemetry(device_id="trap-08", item_id=f"tel:{number}", sent_at=protocol.utc_now())
            )
        telemetry = protocol.up_topic("trap-08", "telemetry")
        assert wait_until(lambda: cloud.received.count(telemetry) == 5, 10)
        # One broker session delivers in publish order: once the spy has this later message
        # on its own down topic, the five would have reached it already, had they been let in.
        cloud.client.publish(own_down, b"after the five", qos=1).wait_for_publish(10)
        assert wait_until(lambda: own_down in spy.received, 10)
        assert spy.received == [own_down]
    finally:
        link.close()
        spy.close()
        cloud.close()


@dataclass
class _Subscriber:
    client: mqtt.Client
    received: list[str]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _subscriber(broker: Broker, identity: str, topic_filters: list[str]) -> _Subscriber:
    """A plain paho client with ``identity``'s certificate, subscribed to ``topic_filters``."""
    cert, key = broker.client_cert(identity)
    granted: list[bool] = []
    received: list[str] = []
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"{identity}-subscriber",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.tls_set(ca_certs=str(broker.ca_file), certfile=str(cert), keyfile=str(key))
    client.on_connect = lambda c, *_: c.subscribe([(f, 1) for f in topic_filters])
    client.on_subscribe = lambda c, u, mid, codes, props: granted.append(
        all(not code.is_failure for code in codes)
    )
    client.on_message = lambda c, u, msg: received.append(msg.topic)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    subscriber = _Subscriber(client, received)
    if not wait_until(lambda: bool(granted), 10) or not granted[0]:
        subscriber.close()
        raise AssertionError(f"{identity} could not subscribe {topic_filters}")
    return subscriber


def test_three_workers_in_one_share_group_drain_a_backlog_and_store_each_item_once(
    broker, postgres_db, tmp_path
):
    root = tmp_path / "cloud"
    items = backlog(DEVICE, captures=40, telemetry=40, file_bytes=9000)
    workers = [
        start_worker(tmp_path, root, postgres_db, f"ingest-{n}", broker=broker) for n in (1, 2, 3)
    ]
    store = PgStore(postgres_db)
    link = device_link(broker, DEVICE)
    try:
        link.connect(timeout=10)
        device = ResendingDevice(link)
        device.queue(items.messages)
        started = time.monotonic()
        assert device.drain(timeout=60), f"{len(device.outstanding)} never acked"
        drained_s = time.monotonic() - started
        summaries = [worker.stop() for worker in workers]
    finally:
        link.close()
        for worker in workers:
            worker.close()

    counters = store.counters()
    assert counters.get("stored.capture") == items.captures
    assert counters.get("stored.telemetry") == items.telemetry
    assert counters.get("stored.full") == items.captures
    assert store.scalar("SELECT count(*) FROM events") == items.captures
    assert store.scalar("SELECT count(*) FROM telemetry") == items.telemetry
    assert store.scalar("SELECT count(*) FROM partial_chunks") == 0
    assert stored_files_match(root, store, items.files)
    # Every worker took a share of the stream.
    processed = [summary["processed"] for summary in summaries]
    assert all(count > 0 for count in processed), processed
    print(
        f"\n3 workers: {len(items.messages)} messages ({items.chunks} chunks) in {drained_s:.1f} s;"
        f" per worker {processed}; device resent {device.resent}"
    )


def test_workers_option_starts_n_workers_and_passes_sigterm_on(broker, postgres_db, tmp_path):
    root = tmp_path / "cloud"
    items = backlog(DEVICE, captures=10, telemetry=20)
    argv = broker.ingest_command(root)
    argv += ["--db", postgres_db, "--share-group", SHARE_GROUP, "--workers", "2"]
    out_path = tmp_path / "supervisor.out"
    with out_path.open("wb") as out, (tmp_path / "supervisor.err").open("wb") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err)
    link = device_link(broker, DEVICE)
    try:
        assert wait_until(lambda: out_path.read_text().count("ingest ready") == 2, 30)
        link.connect(timeout=10)
        device = ResendingDevice(link)
        device.queue(items.messages)
        assert device.drain(timeout=40), f"{len(device.outstanding)} never acked"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, (tmp_path / "supervisor.err").read_text()[-2000:]
    finally:
        link.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    summaries = [line for line in out_path.read_text().splitlines() if line.startswith("{")]
    assert len(summaries) == 2  # each worker stopped cleanly and said what it did
    counters = PgStore(postgres_db).counters()
    assert counters.get("stored.capture") == items.captures
    assert counters.get("stored.telemetry") == items.telemetry


def test_workers_option_exits_non_zero_when_a_worker_dies(broker, postgres_db, tmp_path):
    argv = broker.ingest_command(tmp_path / "cloud")
    argv += ["--db", postgres_db, "--share-group", SHARE_GROUP, "--workers", "2"]
    out_path, err_path = tmp_path / "supervisor.out", tmp_path / "supervisor.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err)
    try:
        assert wait_until(lambda: out_path.read_text().count("ingest ready") == 2, 30)
        children = subprocess.run(
            ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True, check=False
        ).stdout.split()
        workers = [
            pid for pid in children if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()
        ]
        assert len(workers) == 2, children
        os.kill(int(workers[0]), signal.SIGKILL)
        assert proc.wait(30) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "exited -9" in err_path.read_text()


def test_workers_option_refuses_sqlite_and_a_missing_share_group(broker, tmp_path):
    argv = [*broker.ingest_command(tmp_path / "cloud"), "--workers", "2"]
    env = {k: v for k, v in os.environ.items() if k != "CAMTRAP_CLOUD_DB"}
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "camtrap-cloud ingest: --workers needs a PostgreSQL store (--db or $CAMTRAP_CLOUD_DB)"
    )
    argv += ["--db", "postgresql://nobody@127.0.0.1:9/none"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "camtrap-cloud ingest: --workers with --mqtt-host needs --share-group"
    )


def test_two_subscribers_on_one_pubsub_subscription_share_it_and_store_each_item_once(
    pubsub_env, postgres_db, tmp_path
):
    from google.cloud import pubsub_v1

    project = pubsub_env.project
    topic_id, sub_id = f"up-{uuid.uuid4().hex[:8]}", f"ingest-{uuid.uuid4().hex[:8]}"
    publisher = pubsub_v1.PublisherClient()
    topic = publisher.create_topic(name=f"projects/{project}/topics/{topic_id}").name
    admin = pubsub_v1.SubscriberClient()
    subscription = admin.create_subscription(
        name=f"projects/{project}/subscriptions/{sub_id}", topic=topic, ack_deadline_seconds=10
    ).name
    admin.close()
    # Telemetry only: Pub/Sub keeps no order, and a chunk before its metadata waits 10 s.
    items = backlog(DEVICE, captures=0, telemetry=300)
    root = tmp_path / "cloud"
    workers = [
        start_worker(tmp_path, root, postgres_db, f"pull-{n}", subscription=subscription)
        for n in (1, 2)
    ]
    store = PgStore(postgres_db)
    try:
        futures = [
            publisher.publish(
                topic,
                protocol.encode(message),
                deviceID=DEVICE,
                subtopic=protocol.UP_SUFFIX_OF[message.type],
            )
            for message in items.messages
        ]
        for future in futures:
            future.result(timeout=30)
        assert wait_until(
            lambda: store.scalar("SELECT count(*) FROM telemetry") == items.telemetry, 60
        )
        summaries = [worker.stop() for worker in workers]
    finally:
        for worker in workers:
            worker.close()
        publisher.delete_topic(topic=topic)
    counters = store.counters()
    assert counters.get("stored.telemetry") == items.telemetry
    processed = [summary["processed"] for summary in summaries]
    assert all(count > 0 for count in processed), processed
    assert sum(processed) == items.telemetry + counters.get("duplicates.telemetry", 0)
