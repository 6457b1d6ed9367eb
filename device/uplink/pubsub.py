"""Google Cloud Pub/Sub link, shaped by ``transport.Transport``.

The payload bytes are exactly the MQTT ones; ids and routing fields are copied into attributes
(``protocol.pubsub_attributes``). There is no down topic: Pub/Sub has stored a message durably
when its publish future resolves, so that resolution is the ack (``AckEvent`` per chunk, then
``"complete"`` for the item). Retries inside the client library can publish a message twice
with different message ids; ingest deduplicates by our own ids, not Pub/Sub's.

Nothing comes down a Pub/Sub link (no down topic, so no desired model, config or commands):
``on_downlink`` keeps its routes, as the transport contract asks, and nothing ever calls them.

Publisher flow control is ``BLOCK``: ``send`` waits instead of piling unbounded messages in
RAM when the link is slow. Direct device-to-Pub/Sub needs a service-account key on the device;
that suits a few traps in safe places, an MQTT broker bridged to Pub/Sub suits a fleet.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from device import protocol
from device.protocol import Ack, ErrorReply, MediaChunk, UpMessage
from device.uplink.transport import DownlinkHandler, SendHandle, Transport, TransportError

if TYPE_CHECKING:
    from device.config import Settings

log = logging.getLogger(__name__)

# Pub/Sub refuses publish requests over 10 MB (data plus attributes). Our attributes stay under
# 1 KiB, and the rest of the margin covers the request's own framing.
PUBSUB_MAX_REQUEST = 10_000_000
PUBSUB_PAYLOAD_CEILING = PUBSUB_MAX_REQUEST - 64 * 1024


def pubsub_failure(exc: BaseException) -> str:
    """The same short vocabulary as MQTT's, from a google.api_core error."""
    from google.api_core import exceptions

    text = str(getattr(exc, "message", "") or exc)
    lowered = text.lower()
    if isinstance(exc, exceptions.DeadlineExceeded):
        return "timed out"
    if isinstance(exc, exceptions.PermissionDenied | exceptions.Unauthenticated):
        return f"not authorised ({text})"
    if isinstance(exc, exceptions.NotFound):
        return f"topic not found ({text})"
    if "dns" in lowered or "resolve" in lowered or "name or service not known" in lowered:
        return "name not resolved"
    if "certificate" in lowered or "ssl" in lowered or "handshake" in lowered:
        return f"TLS verification failed ({text})"
    if "refused" in lowered:
        return "refused"
    return text


class PubSubSendHandle:
    def __init__(self, item_id: str, future: Future[str]) -> None:
        self.item_id = item_id
        self.future = future

    def wait(self, timeout: float | None = None) -> bool:
        try:
            self.future.result(timeout)
        except Exception:
            return False
        return True


@dataclass
class _ItemProgress:
    """Chunks of one item published in this process: 'complete' needs all of them resolved."""

    pending: set[int] = field(default_factory=set)
    failed: set[int] = field(default_factory=set)
    last_done: bool = False


class PubSubTransport(Transport):
    name = "pubsub"

    def __init__(
        self,
        device_id: str,
        *,
        project: str,
        topic: str,
        credentials_file: Path | None = None,
        max_payload_cap: int = 1024 * 1024,
        flow_max_messages: int = 100,
        flow_max_bytes: int = 32 * 1024 * 1024,
    ) -> None:
        super().__init__(device_id)
        if not project:
            raise TransportError("uplink.pubsub.project is not set")
        self.project, self.topic = project, topic
        self.credentials_file = credentials_file
        self.max_payload_cap = max_payload_cap
        self.flow_max_messages = flow_max_messages
        # The flow controller rejects a single message larger than its byte limit outright.
        self.flow_max_bytes = max(flow_max_bytes, PUBSUB_PAYLOAD_CEILING)
        self.publisher: Any = None
        self.topic_path = f"projects/{project}/topics/{topic}"
        self._connected = False
        # Why the link is down, naming the endpoint (see MqttTransport.offline_reason).
        self.offline_reason: str | None = None
        self._lock = threading.Lock()
        self._items: dict[str, _ItemProgress] = {}
        self.downlink_routes: dict[str, DownlinkHandler] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> PubSubTransport:
        cfg = settings.uplink.pubsub
        return cls(
            settings.device.id,
            project=cfg.project,
            topic=cfg.topic,
            credentials_file=cfg.credentials_file,
            max_payload_cap=settings.uplink.max_payload_bytes,
            flow_max_messages=cfg.flow_max_messages,
            flow_max_bytes=cfg.flow_max_bytes,
        )

    def _make_publisher(self) -> Any:
        # Imported here: the library is heavy and only traps configured for Pub/Sub need it.
        import google.cloud.pubsub_v1 as pubsub_v1
        from google.cloud.pubsub_v1.types import (
            BatchSettings,
            LimitExceededBehavior,
            PublisherOptions,
            PublishFlowControl,
        )

        options = PublisherOptions(
            flow_control=PublishFlowControl(
                message_limit=self.flow_max_messages,
                byte_limit=self.flow_max_bytes,
                limit_exceeded_behavior=LimitExceededBehavior.BLOCK,
            )
        )
        batch = BatchSettings(max_bytes=PUBSUB_MAX_REQUEST - 32 * 1024, max_latency=0.01)
        if self.credentials_file:
            return pubsub_v1.PublisherClient.from_service_account_file(
                str(self.credentials_file), batch_settings=batch, publisher_options=options
            )
        return pubsub_v1.PublisherClient(batch_settings=batch, publisher_options=options)

    # -- lifecycle ---------------------------------------------------------------------------

    def connect(self, timeout: float = 15.0) -> None:
        """Create the publisher and check the topic is reachable and exists."""
        from google.api_core import exceptions

        if self.publisher is None:
            self.publisher = self._make_publisher()
        try:
            self.publisher.get_topic(request={"topic": self.topic_path}, timeout=timeout)
        except exceptions.GoogleAPICallError as exc:
            self._set_connected(False)
            self.offline_reason = f"{self.endpoint}: {pubsub_failure(exc)}"
            raise TransportError(f"Pub/Sub topic {self.topic_path}: {exc}") from exc
        self.offline_reason = None
        self._set_connected(True)

    @property
    def endpoint(self) -> str:
        emulator = os.environ.get("PUBSUB_EMULATOR_HOST")
        if emulator:
            return f"Pub/Sub emulator {emulator} (topic {self.topic_path})"
        return f"Pub/Sub pubsub.googleapis.com:443 (topic {self.topic_path})"

    def close(self) -> None:
        if self.publisher is not None:
            # Waits for batches in flight, so their futures (our acks) resolve first.
            self.publisher.stop()
            self.publisher = None
        self._set_connected(False)

    @property
    def is_connected(self) -> bool:
        return self._connected

    @property
    def max_payload_bytes(self) -> int:
        return min(self.max_payload_cap, PUBSUB_PAYLOAD_CEILING)

    def _set_connected(self, connected: bool) -> None:
        changed = connected != self._connected
        self._connected = connected
        if changed:
            self._notify(connected)

    # -- downlink ----------------------------------------------------------------------------

    def on_downlink(self, topic_filter: str, handler: DownlinkHandler) -> None:
        """Kept, never called: a Pub/Sub link has no down topic (see the module docstring)."""
        self.downlink_routes[topic_filter] = handler

    # -- sending -----------------------------------------------------------------------------

    def _send(self, message: UpMessage, payload: bytes) -> SendHandle:
        attributes = protocol.pubsub_attributes(message)
        item_id = getattr(message, "item_id", "")
        if isinstance(message, MediaChunk):
            with self._lock:
                progress = self._items.setdefault(item_id, _ItemProgress())
                progress.pending.add(message.index)
                progress.failed.discard(message.index)
        future = self.publisher.publish(self.topic_path, payload, **attributes)
        future.add_done_callback(self._resolved(message))
        return PubSubSendHandle(item_id, future)

    def _resolved(self, message: UpMessage) -> Callable[[Future[str]], None]:
        def done(future: Future[str]) -> None:
            error = future.exception()
            item_id = getattr(message, "item_id", None)
            if error is not None and item_id is None:
                log.warning("publish of %s failed: %s", message.type, error)
                return
            if item_id is None:  # status messages are fire-and-forget
                return
            if error is not None:
                log.warning("publish of %s failed: %s", item_id, error)
                # The client library already retried; treat the link as down until connect()
                # has reached the topic again, so the drain loop backs off.
                self._set_connected(False)
                if isinstance(message, MediaChunk):
                    with self._lock:
                        progress = self._items.setdefault(item_id, _ItemProgress())
                        progress.pending.discard(message.index)
                        progress.failed.add(message.index)
                self._emit(
                    ErrorReply(
                        device_id=self.device_id,
                        item_id=item_id,
                        reason="publish_failed",
                        detail=str(error)[:1000],
                    )
                )
                return
            if not isinstance(message, MediaChunk):
                self._emit(Ack(device_id=self.device_id, item_id=item_id))
                return
            self._emit(Ack(device_id=self.device_id, item_id=item_id, chunk=message.index))
            with self._lock:
                progress = self._items.setdefault(item_id, _ItemProgress())
                progress.pending.discard(message.index)
                if message.index == message.count - 1:
                    progress.last_done = True
                finished = progress.last_done and not progress.pending and not progress.failed
                if finished:
                    del self._items[item_id]
            if finished:
                self._emit(Ack(device_id=self.device_id, item_id=item_id))

        return done
