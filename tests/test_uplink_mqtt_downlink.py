"""Downlink routes on the MQTT link, over a real mosquitto: ``on_downlink(filter, handler)``.

The cloud side is the stub's own publisher (the user allowed to write ``camtrap/+/down/#``).
Each handler here only queues, as the transport contract asks of one.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator

import pytest

from cloud_stub.models import rollout as ro
from device import protocol
from device.protocol import Ack
from device.uplink.mqtt import MqttTransport
from tests.support.broker import INGEST_USER, Broker
from tests.support.uplink import device_link, wait_until

DEVICE = "trap-a"
PATIENCE_S = 10.0


class Inbox:
    """A downlink handler that keeps what reaches it."""

    def __init__(self) -> None:
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()

    def __call__(self, suffix: str, payload: bytes) -> None:
        self.messages.put((suffix, payload))

    def next(self) -> tuple[str, bytes]:
        return self.messages.get(timeout=PATIENCE_S)

    def empty(self) -> bool:
        return self.messages.empty()


@pytest.fixture
def cloud(broker: Broker) -> Iterator[ro.Publisher]:
    cert, key = broker.client_cert(INGEST_USER)
    with ro.Publisher(ro.MqttAdmin("127.0.0.1", broker.port, broker.ca_file, cert, key)) as pub:
        yield pub


@pytest.fixture
def link(broker: Broker) -> Iterator[MqttTransport]:
    transport = device_link(broker, DEVICE)
    yield transport
    transport.close()


def send_ack(cloud: ro.Publisher, item_id: str) -> None:
    ack = Ack(device_id=DEVICE, item_id=item_id)
    info = cloud.client.publish(protocol.topic_for(ack), protocol.encode(ack), qos=1)
    info.wait_for_publish(PATIENCE_S)


def test_a_route_gets_its_own_topic_and_acks_stay_with_the_link(link, cloud):
    commands, configs = Inbox(), Inbox()
    link.on_downlink("command", commands)
    link.on_downlink("config", configs)
    link.connect(timeout=PATIENCE_S)
    cloud.publish(ro.command(DEVICE, "sync-now", "c1"), retain=False)
    send_ack(cloud, "meta:e1")
    suffix, payload = commands.next()
    assert suffix == "command" and protocol.decode(payload).command_id == "c1"
    event = link.next_event(timeout=PATIENCE_S)
    assert event is not None and event.item_id == "meta:e1"
    assert configs.empty() and commands.empty()


def test_a_catch_all_route_never_sees_acks(link, cloud):
    everything = Inbox()
    link.on_downlink("#", everything)
    link.connect(timeout=PATIENCE_S)
    send_ack(cloud, "meta:e1")
    cloud.publish(ro.command(DEVICE, "sync-now", "c1"), retain=False)
    assert everything.next()[0] == "command"
    event = link.next_event(timeout=PATIENCE_S)
    assert event is not None and event.item_id == "meta:e1"
    assert everything.empty()


def test_a_route_made_while_connected_still_gets_the_retained_messages(link, cloud):
    cloud.publish(ro.desired_config(DEVICE, 4, {"capture": {"burst_frames": 5}}), retain=True)
    early = Inbox()
    link.on_downlink("+", early)
    link.connect(timeout=PATIENCE_S)
    assert early.next()[0] == "config"  # the retained message came with the connect, and went
    late = Inbox()
    link.on_downlink("config", late)
    suffix, payload = late.next()
    assert suffix == "config" and protocol.decode(payload).version == 4


def test_routes_outlive_a_broker_restart(broker, link):
    commands = Inbox()
    link.on_downlink("command", commands)
    link.connect(timeout=PATIENCE_S)
    broker.restart()
    assert wait_until(lambda: link.is_connected, timeout=30)
    cert, key = broker.client_cert(INGEST_USER)
    with ro.Publisher(ro.MqttAdmin("127.0.0.1", broker.port, broker.ca_file, cert, key)) as cloud:
        cloud.publish(ro.command(DEVICE, "capture-test", "after"), retain=False)
        assert protocol.decode(commands.next()[1]).command_id == "after"


def test_a_failing_handler_leaves_the_link_up(link, cloud):
    def broken(suffix: str, payload: bytes) -> None:
        raise RuntimeError("a bug in a room")

    later = Inbox()
    link.on_downlink("command", broken)
    link.on_downlink("config", later)
    link.connect(timeout=PATIENCE_S)
    cloud.publish(ro.command(DEVICE, "sync-now", "c1"), retain=False)
    cloud.publish(ro.desired_config(DEVICE, 1, {"capture": {"burst_frames": 5}}), retain=False)
    assert later.next()[0] == "config"
    send_ack(cloud, "meta:e1")
    event = link.next_event(timeout=PATIENCE_S)
    assert event is not None and event.item_id == "meta:e1"
    assert link.is_connected
