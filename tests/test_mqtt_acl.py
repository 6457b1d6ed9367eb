"""The broker's ACL confines each device to its own topics (real certificates, real mosquitto)."""

from __future__ import annotations

import queue
import ssl
import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from device import protocol
from device.protocol import Ack, Telemetry
from tests.support.broker import INGEST_USER, Broker
from tests.support.messages import capture
from tests.support.uplink import collect_until, completed, device_link, query, running_ingest

# Fixtures (real services) from tests/support, whatever conftest.py lists.
pytest_plugins = ["tests.support.broker"]
pytestmark = pytest.mark.timeout(60)


class RawClient:
    """A plain paho client with some identity's certificate, for doing what our code never does."""

    def __init__(self, broker: Broker, identity: str) -> None:
        cert, key = broker.client_cert(identity)
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.publish_results: dict[int, object] = {}
        self._published = threading.Condition()
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"raw-{identity}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        context = ssl.create_default_context(cafile=str(broker.ca_file))
        context.load_cert_chain(str(cert), str(key))
        client.tls_set_context(context)
        client.on_connect = lambda c, u, f, rc, p: self._connected.set()
        client.on_message = lambda c, u, msg: self.messages.put(msg)
        client.on_subscribe = lambda c, u, mid, rcs, p: self._subscribed.set()
        client.on_publish = self._on_publish
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        assert self._connected.wait(10)
        self.client = client

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._published:
            self.publish_results[mid] = reason_code
            self._published.notify_all()

    def publish(self, topic: str, payload: bytes) -> object:
        """Publish at QoS 1 and return the broker's PUBACK reason code."""
        info = self.client.publish(topic, payload, qos=1)
        with self._published:
            self._published.wait_for(lambda: info.mid in self.publish_results, timeout=10)
        return self.publish_results[info.mid]

    def subscribe(self, topic: str) -> None:
        self._subscribed.clear()
        self.client.subscribe(topic, qos=1)
        assert self._subscribed.wait(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_a_device_cannot_publish_under_another_devices_topics(broker, tmp_path):
    root = tmp_path / "cloud"
    forged, _ = capture("trap-b")
    with running_ingest(broker, root):
        intruder = RawClient(broker, "trap-a")
        try:
            reason = intruder.publish(protocol.topic_for(forged), protocol.encode(forged))
        finally:
            intruder.close()
        assert reason.is_failure and reason.getName() == "Not authorized"

        # Barrier: a legitimate message sent afterwards is stored and acked, so ingest has
        # seen everything the broker let through before it.
        link = device_link(broker, "trap-a")
        link.connect(timeout=10)
        try:
            link.send(Telemetry(device_id="trap-a", item_id="tel:1", sent_at=protocol.utc_now()))
            assert collect_until(link, completed({"tel:1"}))
        finally:
            link.close()
    assert query(root, "SELECT count(*) FROM events") == [(0,)]
    assert query(root, "SELECT device_id FROM devices") == [("trap-a",)]


def test_a_device_cannot_read_another_devices_down_topics(broker):
    spy = RawClient(broker, "trap-a")
    cloud = RawClient(broker, INGEST_USER)
    victim = device_link(broker, "trap-b")
    victim.connect(timeout=10)
    try:
        spy.subscribe(protocol.down_topic("trap-b", "ack"))
        spy.subscribe(protocol.down_topic("trap-a", "ack"))
        for_b = Ack(device_id="trap-b", item_id="capture:secret")
        for_a = Ack(device_id="trap-a", item_id="capture:mine")
        assert not cloud.publish(protocol.topic_for(for_b), protocol.encode(for_b)).is_failure
        assert not cloud.publish(protocol.topic_for(for_a), protocol.encode(for_a)).is_failure

        assert victim.next_event(timeout=10) == for_b  # the rightful reader gets it
        # Per-subscriber order is kept, so once the spy has its own later ack, B's would
        # already have arrived had the broker let it through.
        received = [spy.messages.get(timeout=10)]
        while not spy.messages.empty():
            received.append(spy.messages.get_nowait())
        assert [m.topic for m in received] == [protocol.down_topic("trap-a", "ack")]
    finally:
        victim.close()
        spy.close()
        cloud.close()


def test_a_device_cannot_write_down_topics_even_its_own(broker):
    forger = RawClient(broker, "trap-a")
    try:
        fake = Ack(device_id="trap-a", item_id="capture:never-stored")
        reason = forger.publish(protocol.topic_for(fake), protocol.encode(fake))
    finally:
        forger.close()
    assert reason.is_failure
