"""A device's MQTT link and the cloud ingest over TLS with client certificates, real mosquitto."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest

from device import protocol
from device.protocol import Telemetry
from tests.support.messages import capture
from tests.support.uplink import (
    collect_until,
    completed,
    device_link,
    query,
    running_ingest,
    wait_until,
)

# Fixtures (real services) from tests/support, whatever conftest.py lists.
pytest_plugins = ["tests.support.broker"]
pytestmark = pytest.mark.timeout(60)


def test_capture_and_its_media_arrive_and_are_acknowledged_after_storage(broker, tmp_path):
    meta, files = capture("trap-01", frames=2, full_files=[os.urandom(200_000), b"\xff\xd8tiny"])
    with running_ingest(broker, tmp_path / "cloud"):
        link = device_link(broker, "trap-01", max_payload_cap=64 * 1024)
        link.connect(timeout=10)
        try:
            link.send(meta)
            items = {meta.item_id}
            for media, data in zip(meta.media, files, strict=True):
                item_id = f"full:{media.media_id}"
                items.add(item_id)
                for chunk in protocol.split_media(
                    data,
                    max_payload_bytes=link.max_payload_bytes,
                    device_id="trap-01",
                    item_id=item_id,
                    media_id=media.media_id,
                    kind="full",
                ):
                    link.send(chunk)
            events = collect_until(link, completed(items))
        finally:
            link.close()

    acked = {e.item_id for e in events if e.type == "ack" and e.chunk == "complete"}
    assert acked == items
    assert not [e for e in events if e.type == "error"]
    big_chunks = {e.chunk for e in events if e.item_id == f"full:{meta.media[0].media_id}"}
    assert big_chunks >= {0, 1, 2, 3, "complete"}  # 200 KB in 64 KiB payloads: 4 chunks

    root = tmp_path / "cloud"
    assert query(root, "SELECT event_id, deployment_id FROM events") == [
        (meta.event.event_id, "dep-1")
    ]
    rows = query(root, "SELECT media_id, file_path, sha256 FROM media ORDER BY seq")
    assert [r[0] for r in rows] == [m.media_id for m in meta.media]
    for (_, path, sha), data in zip(rows, files, strict=True):
        stored = (root / "media" / path).read_bytes()
        assert stored == data
        assert sha == hashlib.sha256(data).hexdigest()
        assert path.startswith("dep-1/")
    assert query(root, "SELECT count(*) FROM observations") == [(2,)]
    assert query(root, "SELECT count(*) FROM partial_chunks") == [(0,)], (
        "partial chunks are cleaned up once stored"
    )


def test_device_presence_is_retained_online_then_offline(broker, tmp_path):
    root = tmp_path / "cloud"

    def status() -> list[tuple[str]]:
        return query(root, "SELECT status FROM devices WHERE device_id = 'trap-02'")

    with running_ingest(broker, root):
        link = device_link(broker, "trap-02")
        link.connect(timeout=10)
        link.send(Telemetry(device_id="trap-02", item_id="tel:1", sent_at=protocol.utc_now()))
        collect_until(link, completed({"tel:1"}))
        assert status() == [("online",)]
        link.close()
        assert wait_until(lambda: status() == [("offline",)])


def test_telemetry_sent_twice_is_stored_once_and_acked_twice(broker, tmp_path):
    root = tmp_path / "cloud"
    msg = Telemetry(
        device_id="trap-03", item_id="tel:42", sent_at=protocol.utc_now(), free_disk_bytes=10**9
    )
    with running_ingest(broker, root):
        link = device_link(broker, "trap-03")
        link.connect(timeout=10)
        try:
            link.send(msg)
            link.send(msg)
            events = collect_until(link, lambda ev: len(ev) >= 2)
        finally:
            link.close()
    assert [(e.item_id, e.chunk) for e in events] == [("tel:42", "complete")] * 2
    assert sorted(e.duplicate for e in events) == [False, True]
    assert query(root, "SELECT item_id FROM telemetry") == [("tel:42",)]


DEVICE_SCRIPT = """
import sys, time
from pathlib import Path
from device.uplink.mqtt import MqttTransport
device, port, ca, cert, key = sys.argv[1:6]
link = MqttTransport(device, host="127.0.0.1", port=int(port), ca_file=Path(ca),
                     cert_file=Path(cert), key_file=Path(key))
link.connect(timeout=10)
print("connected", flush=True)
time.sleep(60)
"""


def test_the_last_will_marks_a_killed_device_offline(broker, tmp_path):
    root = tmp_path / "cloud"
    cert, key = broker.client_cert("trap-04")

    def status() -> list[tuple[str]]:
        return query(root, "SELECT status FROM devices WHERE device_id = 'trap-04'")

    with running_ingest(broker, root):
        agent = subprocess.Popen(
            [
                sys.executable,
                "-c",
                DEVICE_SCRIPT,
                "trap-04",
                str(broker.port),
                str(broker.ca_file),
                str(cert),
                str(key),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert agent.stdout.readline().strip() == "connected"
            assert wait_until(lambda: status() == [("online",)])
        finally:
            agent.kill()  # SIGKILL: no goodbye, only the will
            agent.wait(10)
        assert wait_until(lambda: status() == [("offline",)])


def test_the_link_is_built_from_the_agents_configuration(broker, tmp_path):
    from device.config import Settings
    from device.uplink.mqtt import MqttTransport

    cert, key = broker.client_cert("trap-05")
    settings = Settings(
        device={"id": "trap-05"},
        uplink={
            "max_payload_bytes": 8192,
            "mqtt": {
                "host": "127.0.0.1",
                "port": broker.port,
                "ca_file": str(broker.ca_file),
                "cert_file": str(cert),
                "key_file": str(key),
            },
        },
    )
    with running_ingest(broker, tmp_path / "cloud"):
        link = MqttTransport.from_settings(settings)
        link.connect(timeout=10)
        try:
            assert link.max_payload_bytes == 8192
            link.send(Telemetry(device_id="trap-05", item_id="tel:cfg", sent_at=protocol.utc_now()))
            assert collect_until(link, completed({"tel:cfg"}))
        finally:
            link.close()
