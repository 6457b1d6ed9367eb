"""Nothing larger than the broker's Maximum Packet Size ever leaves the device."""

from __future__ import annotations

import os
import time

import pytest

from device import protocol
from device.protocol import Telemetry
from device.uplink.mqtt import publish_overhead
from device.uplink.transport import PayloadTooLarge
from tests.support.messages import capture
from tests.support.uplink import collect_until, completed, device_link, query, running_ingest

# Fixtures (real services) from tests/support, whatever conftest.py lists.
pytest_plugins = ["tests.support.broker"]
pytestmark = pytest.mark.timeout(60)

BROKER_LIMIT = 4096


def test_the_payload_limit_comes_from_connack_and_a_cap_only_lowers_it(broker_factory):
    broker = broker_factory(max_packet_size=BROKER_LIMIT)
    generous = device_link(broker, "trap-01", max_payload_cap=1024 * 1024)
    frugal = device_link(broker, "trap-02", max_payload_cap=1500)
    generous.connect(timeout=10)
    frugal.connect(timeout=10)
    try:
        assert generous.broker_max_packet_size == BROKER_LIMIT
        longest = protocol.up_topic("trap-01", "telemetry")
        assert generous.max_payload_bytes + publish_overhead(longest) <= BROKER_LIMIT
        assert generous.max_payload_bytes > BROKER_LIMIT - 100  # and not wastefully small
        assert frugal.max_payload_bytes == 1500
    finally:
        generous.close()
        frugal.close()


def test_media_is_chunked_under_the_broker_limit_and_still_arrives_whole(broker_factory, tmp_path):
    broker = broker_factory(max_packet_size=BROKER_LIMIT)
    data = os.urandom(50_000)
    meta, _ = capture("trap-01", full_files=[data])
    media_id = meta.media[0].media_id
    root = tmp_path / "cloud"
    with running_ingest(broker, root):
        link = device_link(broker, "trap-01")
        link.connect(timeout=10)
        try:
            link.send(meta)
            chunks = list(
                protocol.split_media(
                    data,
                    max_payload_bytes=link.max_payload_bytes,
                    device_id="trap-01",
                    item_id=f"full:{media_id}",
                    media_id=media_id,
                    kind="full",
                )
            )
            for chunk in chunks:
                packet = publish_overhead(protocol.topic_for(chunk)) + len(protocol.encode(chunk))
                assert packet <= BROKER_LIMIT
                link.send(chunk)
            events = collect_until(link, completed({meta.item_id, f"full:{media_id}"}))
        finally:
            link.close()
    assert len(chunks) >= 13  # 50 KB through ~4 KB payloads
    assert {e.chunk for e in events if e.item_id == f"full:{media_id}"} == {
        *range(len(chunks)),
        "complete",
    }
    (path,) = query(root, "SELECT file_path FROM media")[0]
    assert (root / "media" / path).read_bytes() == data
    assert "oversize packet" not in broker.log_tail(500)


def test_an_oversize_message_is_refused_locally_and_the_link_stays_up(broker_factory, tmp_path):
    broker = broker_factory(max_packet_size=BROKER_LIMIT)
    bloated = Telemetry(
        device_id="trap-01",
        item_id="tel:big",
        sent_at=protocol.utc_now(),
        queue_depth={f"class-{i:04d}": i for i in range(400)},
    )
    small = Telemetry(device_id="trap-01", item_id="tel:small", sent_at=protocol.utc_now())
    with running_ingest(broker, tmp_path / "cloud"):
        link = device_link(broker, "trap-01")
        link.connect(timeout=10)
        try:
            with pytest.raises(PayloadTooLarge) as refused:
                link.send(bloated)
            assert refused.value.size > refused.value.limit == link.max_payload_bytes
            link.send(small)
            events = collect_until(link, completed({"tel:small"}))
            assert link.is_connected
        finally:
            link.close()
    assert [e.item_id for e in events] == ["tel:small"]
    assert "oversize packet" not in broker.log_tail(500)


def test_control_the_broker_really_drops_a_client_that_ignores_the_limit(broker_factory):
    # What paho alone does (it ignores CONNACK's limit), to show the checks above can fail.
    broker = broker_factory(max_packet_size=BROKER_LIMIT)
    link = device_link(broker, "trap-01")
    link.connect(timeout=10)
    try:
        link.client.publish(protocol.up_topic("trap-01", "telemetry"), b"x" * 5000, qos=1)
        deadline = time.monotonic() + 10
        while "oversize packet" not in broker.log_tail(500) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        link.client.loop_stop()
    assert "disconnected due to oversize packet" in broker.log_tail(500)
