"""The MQTT link survives a broker SIGKILL: it reconnects by itself and acks owed still arrive."""

from __future__ import annotations

import threading

import pytest

from device import protocol
from device.protocol import Ack, Telemetry
from device.uplink.transport import NotConnected, TransportError
from tests.support.broker import INGEST_USER
from tests.support.uplink import collect_until, completed, device_link, running_ingest

# Fixtures (real services) from tests/support, whatever conftest.py lists.
pytest_plugins = ["tests.support.broker"]
pytestmark = pytest.mark.timeout(90)


def wait_for(event: threading.Event, timeout: float = 30.0) -> bool:
    return event.wait(timeout)


def test_link_reconnects_after_the_broker_is_killed_and_restarted(broker, tmp_path):
    link = device_link(broker, "trap-01")
    down, up_again = threading.Event(), threading.Event()
    link.connect(timeout=10)
    link.on_connection_change(lambda connected: (up_again if connected else down).set())
    try:
        broker.kill()
        assert wait_for(down)
        assert not link.is_connected
        with pytest.raises(NotConnected):
            link.send(Telemetry(device_id="trap-01", item_id="tel:x", sent_at=protocol.utc_now()))
        broker.start()
        assert wait_for(up_again)
        with running_ingest(broker, tmp_path / "cloud"):
            link.send(Telemetry(device_id="trap-01", item_id="tel:1", sent_at=protocol.utc_now()))
            assert collect_until(link, completed({"tel:1"}))
    finally:
        link.close()


def test_acks_sent_while_the_device_was_away_arrive_when_it_returns(broker):
    """The persistent session (clean_start=False + expiry) queues acks for an absent device."""
    first = device_link(broker, "trap-01")
    first.connect(timeout=10)  # creates the session and its down/# subscription
    first.close()

    cloud = device_link(broker, INGEST_USER)  # any client with the ingest identity can ack
    cloud.connect(timeout=10)
    owed = Ack(device_id="trap-01", item_id="capture:while-away")
    cloud.client.publish(protocol.topic_for(owed), protocol.encode(owed), qos=1).wait_for_publish(
        10
    )
    cloud.close()

    back = device_link(broker, "trap-01")
    back.connect(timeout=10)
    try:
        assert back.next_event(timeout=10) == owed
    finally:
        back.close()


def test_a_device_with_a_certificate_from_another_ca_is_refused(broker_factory):
    ours, theirs = broker_factory(), broker_factory()
    cert, key = theirs.client_cert("trap-01")
    from device.uplink.mqtt import MqttTransport

    stranger = MqttTransport(
        "trap-01",
        host="127.0.0.1",
        port=ours.port,
        ca_file=ours.ca_file,
        cert_file=cert,
        key_file=key,
    )
    try:
        with pytest.raises(TransportError):
            stranger.connect(timeout=3)
    finally:
        stranger.close()


def test_username_and_password_over_tls_work_and_a_wrong_password_is_refused(broker_factory):
    from device.uplink.mqtt import MqttTransport

    broker = broker_factory(passwords={"trap-07": "correct horse"})

    def link(password: str) -> MqttTransport:
        return MqttTransport(
            "trap-07",
            host="127.0.0.1",
            port=broker.password_port,
            ca_file=broker.ca_file,
            username="trap-07",
            password=password,
        )

    good = link("correct horse")
    good.connect(timeout=10)
    try:
        # The ACL applies to password users too: its own up topics only.
        assert good.send(
            Telemetry(device_id="trap-07", item_id="tel:1", sent_at=protocol.utc_now())
        ).wait(10)
    finally:
        good.close()
    bad = link("wrong")
    try:
        with pytest.raises(
            TransportError, match=r"broker said: (Not authorized|Bad user name or password)"
        ):
            bad.connect(timeout=5)
    finally:
        bad.close()


def test_a_password_is_never_sent_without_tls():
    from device.uplink.mqtt import MqttTransport

    with pytest.raises(TransportError, match="without TLS"):
        MqttTransport("trap-07", host="127.0.0.1", port=1, tls=False, username="u", password="p")
