"""Helpers for uplink tests: a device link and an ingest on a test broker, and event waiting."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cloud_stub.ingest.core import Ingestor
from cloud_stub.ingest.mqtt_source import MqttIngest
from device.uplink.mqtt import MqttTransport
from device.uplink.transport import AckEvent, Transport
from tests.support.broker import INGEST_USER, Broker


def device_link(broker: Broker, device_id: str, **kwargs: Any) -> MqttTransport:
    cert, key = broker.client_cert(device_id)
    return MqttTransport(
        device_id,
        host="127.0.0.1",
        port=broker.port,
        ca_file=broker.ca_file,
        cert_file=cert,
        key_file=key,
        **kwargs,
    )


@contextmanager
def running_ingest(broker: Broker, root: Path) -> Iterator[MqttIngest]:
    cert, key = broker.client_cert(INGEST_USER)
    ingestor = Ingestor(root)
    source = MqttIngest(
        ingestor,
        host="127.0.0.1",
        port=broker.port,
        ca_file=broker.ca_file,
        cert_file=cert,
        key_file=key,
    )
    source.start(timeout=10)
    try:
        yield source
    finally:
        source.stop()
        ingestor.close()


def collect_until(
    transport: Transport, done: Callable[[list[AckEvent]], bool], timeout: float = 20.0
) -> list[AckEvent]:
    """Gather events until ``done(events)``; gives up after ``timeout`` (a bound, not a check)."""
    events: list[AckEvent] = []
    deadline = time.monotonic() + timeout
    while not done(events) and time.monotonic() < deadline:
        event = transport.next_event(timeout=0.1)
        if event is not None:
            events.append(event)
    return events


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)
    return predicate()


def completed(item_ids: set[str]) -> Callable[[list[AckEvent]], bool]:
    def check(events: list[AckEvent]) -> bool:
        done = {e.item_id for e in events if e.type == "ack" and e.chunk == "complete"}
        return item_ids <= done

    return check


def query(root: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Read the ingest database through a connection of our own (the worker owns its one)."""
    db = sqlite3.connect(root / "ingest.sqlite")
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()
