"""What the drain loop sees of a link to the cloud, whichever transport carries it.

The contract, for MQTT and Pub/Sub alike:

* ``connect(timeout)`` starts the link and returns once it is usable (or raises
  ``TransportError``); the transport reconnects by itself afterwards. ``is_connected`` says
  whether a ``send`` can go out now; ``on_connection_change`` callbacks hear every change.
* ``max_payload_bytes`` is the largest payload one ``send`` may carry. For MQTT it comes from the
  broker's CONNACK Maximum Packet Size minus the PUBLISH packet's own bytes, never above it, and
  a configured cap may lower it. Cut media with ``protocol.split_media(..., max_payload_bytes=
  transport.max_payload_bytes)``. ``send`` refuses anything larger with ``PayloadTooLarge``
  before a byte leaves the process, because paho would resend an oversize message forever.
* ``send(message)`` encodes one protocol message and hands it to the link. The returned
  ``SendHandle`` only says the message left (MQTT PUBACK, which is NOT durable) and may be
  waited on for back-pressure. It never means "delivered".
* Delivery is known only from ``AckEvent``s, read with ``next_event(timeout)``: an ``Ack``
  (``chunk`` = index, or ``"complete"`` for a whole item; a one-chunk file gets only
  ``"complete"``) or an ``ErrorReply`` (``restart``: resend from chunk 0). Over MQTT they come
  from the cloud ingest on ``camtrap/{device}/down/ack`` after it committed the data (an
  ``acks`` batch arrives as single ``Ack`` events). Over Pub/Sub there is no down topic: a
  resolved publish future is the ack (Pub/Sub has stored the message when it resolves), so the
  transport makes the same events itself: one per chunk, then ``"complete"`` once every chunk
  of the item sent by this process resolved. A failed future becomes a retryable
  ``ErrorReply`` and marks the link down until ``connect()`` reaches the topic again.
  The drain loop marks an outbox item done only on ``"complete"``.

  A drain step, in short::

      for chunk in protocol.split_media(data, max_payload_bytes=link.max_payload_bytes,
                                        ..., start=acked_chunks):
          link.send(chunk)            # PayloadTooLarge / NotConnected: leave it queued
      while (event := link.next_event(timeout=1.0)) is not None:
          ...                         # record chunk acks; "complete" -> outbox item done
* ``on_downlink(topic_filter, handler)`` routes messages from the cloud below the device's
  down topic (``camtrap/{device}/down/``) to ``handler(suffix, payload)``, the way paho's
  ``message_callback_add`` routes topics: the filter is an MQTT topic filter relative to that
  prefix (``"model"``, ``"command"``, ``"+"``, ``"#"``). ``ack`` is the transport's own and
  reaches no handler. A handler runs on the link's thread and must only queue; if it raises,
  the error is logged and the link carries on. Registrations outlive reconnects (subscribing
  again is the transport's job), and one made while connected subscribes again, so retained
  messages (the desired model and config) reach the new handler. Pub/Sub has no down topic:
  its handlers are kept but never called.
* ``max_payload_cap`` is the configured ceiling on ``max_payload_bytes``
  (``uplink.max_payload_bytes``); remote config may change it while the link runs.
* ``close()`` says goodbye (MQTT: a retained ``offline`` status) and stops the threads.

Events may repeat (at-least-once everywhere): treat them idempotently.

``interrupt()`` ends a ``next_event`` wait early (it returns None as on a timeout): the drain
blocks in ``next_event`` for as long as nothing is due, and a new capture wakes it this way.
"""

from __future__ import annotations

import queue
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Protocol

from device import protocol
from device.protocol import Ack, ErrorReply, UpMessage

AckEvent = Ack | ErrorReply
# (suffix of the down topic, payload): "model", "config", "command", ...
DownlinkHandler = Callable[[str, bytes], None]


class TransportError(RuntimeError):
    """The link could not be set up or used (bad credentials, no route, refused)."""


class NotConnected(TransportError):
    """``send`` while the link is down: keep the item in the outbox and try later."""


class PayloadTooLarge(TransportError):
    """The encoded message exceeds ``max_payload_bytes``; it was not sent."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"payload of {size} bytes exceeds the link's limit of {limit}")
        self.size = size
        self.limit = limit


class SendHandle(Protocol):
    """The link's receipt for one ``send``; says nothing about durable delivery."""

    item_id: str

    def wait(self, timeout: float | None = None) -> bool:
        """True once the message left this process (PUBACK / publish future resolved)."""
        ...


class Transport(ABC):
    """Base with the event queue and connection listeners both transports share."""

    name: str = "abstract"
    max_payload_cap: int

    def __init__(self, device_id: str) -> None:
        self.device_id = device_id
        # None in the queue is an interrupt: it ends a wait without being an event.
        self._events: queue.Queue[AckEvent | None] = queue.Queue()
        self._interrupted = threading.Event()
        self._listeners: list[Callable[[bool], None]] = []
        self._listeners_lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------

    @abstractmethod
    def connect(self, timeout: float = 15.0) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    @property
    @abstractmethod
    def is_connected(self) -> bool: ...

    @property
    @abstractmethod
    def max_payload_bytes(self) -> int: ...

    # -- downlink ----------------------------------------------------------------------------

    @abstractmethod
    def on_downlink(self, topic_filter: str, handler: DownlinkHandler) -> None:
        """Route down-topic messages matching ``topic_filter`` to ``handler`` (see above)."""

    # -- sending -----------------------------------------------------------------------------

    def send(self, message: UpMessage) -> SendHandle:
        if message.device_id != self.device_id:
            raise ValueError(f"message for {message.device_id!r} on {self.device_id!r}'s link")
        payload = protocol.encode(message)
        limit = self.max_payload_bytes
        if len(payload) > limit:
            raise PayloadTooLarge(len(payload), limit)
        if not self.is_connected:
            raise NotConnected(f"{self.name} link is down")
        return self._send(message, payload)

    @abstractmethod
    def _send(self, message: UpMessage, payload: bytes) -> SendHandle: ...

    # -- events ------------------------------------------------------------------------------

    def next_event(self, timeout: float | None = None) -> AckEvent | None:
        """The next ack or error from ingest, or None after ``timeout`` seconds (or sooner,
        after an ``interrupt()``)."""
        try:
            event = self._events.get(timeout=timeout)
        except queue.Empty:
            return None
        if event is None:
            self._interrupted.clear()
        return event

    def drain_events(self) -> list[AckEvent]:
        """Every event already waiting, without blocking."""
        out: list[AckEvent] = []
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return out
            if event is None:
                self._interrupted.clear()
            else:
                out.append(event)

    def interrupt(self) -> None:
        """End the current (or the next) ``next_event`` wait now; any thread may call it."""
        if not self._interrupted.is_set():  # one marker is enough, however many wake-ups
            self._interrupted.set()
            self._events.put(None)

    def on_connection_change(self, callback: Callable[[bool], None]) -> None:
        """``callback(connected)`` on every change; runs on the link's thread, keep it short."""
        with self._listeners_lock:
            self._listeners.append(callback)

    def _emit(self, event: AckEvent) -> None:
        self._events.put(event)

    def _notify(self, connected: bool) -> None:
        with self._listeners_lock:
            listeners = list(self._listeners)
        for callback in listeners:
            callback(connected)
