"""Helpers for uplink tests: a device link and an ingest on a test broker, event waiting, and
a fake link (``FakeLink``) for tests that drive the drain on a fake clock."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloud_stub.ingest.core import Ingestor
from cloud_stub.ingest.mqtt_source import MqttIngest
from device.protocol import Ack, MediaChunk, UpMessage
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


def ingest_source(broker: Broker, ingestor: Ingestor, **options: Any) -> MqttIngest:
    """The privileged ``ingest`` client on ``broker``, feeding ``ingestor`` (not started)."""
    cert, key = broker.client_cert(INGEST_USER)
    return MqttIngest(
        ingestor,
        host="127.0.0.1",
        port=broker.port,
        ca_file=broker.ca_file,
        cert_file=cert,
        key_file=key,
        **options,
    )


@contextmanager
def running_ingest(broker: Broker, root: Path) -> Iterator[MqttIngest]:
    ingestor = Ingestor(root)
    source = ingest_source(broker, ingestor)
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


def query(root: Path, sql: str, *args: Any, url: str | None = None) -> list[tuple[Any, ...]]:
    """Read the ingest store (``<root>/ingest.sqlite``, or the PostgreSQL ``url``) through a
    read-only connection of our own (the ingest worker owns its one)."""
    from cloud_stub.ingest.opening import open_store_db

    db = open_store_db(root, url=url, check=False)
    try:
        return [tuple(row) for row in db.execute(sql, args).fetchall()]
    finally:
        db.close()


class FakeLink(Transport):
    """A link whose far end is the test: every message sent is kept in ``sent``, and acks
    arrive only when the test says so (``ack``, ``ack_all``), or at once with ``auto_ack``.

    It answers the way ingest does: a one-chunk file or a metadata message gets only
    ``"complete"``; a chunked file gets one ack per chunk and ``"complete"`` after its last.
    ``next_event`` never blocks, so a test drives ``Drain.step`` on a fake clock.
    """

    name = "fake"

    def __init__(self, device_id: str, *, auto_ack: bool = False, max_payload: int = 1 << 20):
        super().__init__(device_id)
        self.max_payload_cap = max_payload
        self.auto_ack = auto_ack
        self.sent: list[UpMessage] = []
        self.unanswered: list[UpMessage] = []
        self.connected = True

    def connect(self, timeout: float = 15.0) -> None:
        if not self.connected:
            self.connected = True
            self._notify(True)

    def close(self) -> None:
        self.connected = False

    @property
    def is_connected(self) -> bool:
        return self.connected

    @property
    def max_payload_bytes(self) -> int:
        return self.max_payload_cap

    def on_downlink(self, topic_filter: str, handler: Callable[[str, bytes], None]) -> None:
        pass  # nothing comes down a fake link

    def next_event(self, timeout: float | None = None) -> AckEvent | None:
        try:
            return self._events.get_nowait()  # what is there already: never a wait
        except queue.Empty:
            return None

    def _send(self, message: UpMessage, payload: bytes) -> _Sent:
        self.sent.append(message)
        if self.auto_ack:
            self.answer(message)
        else:
            self.unanswered.append(message)
        return _Sent(message.item_id)

    # -- what the test does with it ----------------------------------------------------------

    def drop(self) -> None:
        """The link goes down (the drain hears it, as from a real transport)."""
        self.connected = False
        self._notify(False)

    def answer(self, message: UpMessage) -> None:
        """Ingest's acks for one message it stored."""
        if isinstance(message, MediaChunk) and message.count > 1:
            self._emit(Ack(device_id=self.device_id, item_id=message.item_id, chunk=message.index))
            if message.index < message.count - 1:
                return
        self._emit(Ack(device_id=self.device_id, item_id=message.item_id, chunk="complete"))

    def answer_all(self) -> None:
        """Acks for everything sent and not answered yet, in the order it was sent."""
        pending, self.unanswered = self.unanswered, []
        for message in pending:
            self.answer(message)

    def item_ids_sent(self) -> list[str]:
        return [m.item_id for m in self.sent]


@dataclass(frozen=True)
class _Sent:
    item_id: str

    def wait(self, timeout: float | None = None) -> bool:
        return True
