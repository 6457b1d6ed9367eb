"""Ingest from a Pub/Sub subscription, by synchronous pull in batches.

A batch is committed first and acknowledged to Pub/Sub afterwards, so a crash in between only
means redelivery (which dedup absorbs). Messages ingest wants again later (a chunk that overtook
its metadata: Pub/Sub does not keep order) get a short ack deadline instead of an ack.
Several subscribers (processes) on ONE subscription share its messages: Pub/Sub leases each
message to one of them at a time, and the store's unique keys absorb a redelivery.
The device id comes from the ``deviceID`` attribute and must match the payload; with direct
device publishing, every device holding a key could write any attribute, which is one more
reason the fleet path is MQTT with per-device certificates, bridged to Pub/Sub.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from cloud_stub.ingest.core import Incoming, Ingestor
from device.contracts.errors import one_line

log = logging.getLogger(__name__)

RETRY_DELAY_S = 10


def make_subscriber() -> Any:
    """A subscriber client; against the emulator, one that may pull messages over 4 MiB."""
    import google.cloud.pubsub_v1 as pubsub_v1
    import grpc
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

    host = os.environ.get("PUBSUB_EMULATOR_HOST")
    if not host:
        return pubsub_v1.SubscriberClient()
    channel = grpc.insecure_channel(
        host,
        options=[("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)],
    )
    return pubsub_v1.SubscriberClient(transport=SubscriberGrpcTransport(channel=channel))


class PubSubIngest:
    def __init__(
        self,
        ingestor: Ingestor,
        subscription: str,
        *,
        batch_max: int = 100,
        retry_delay_s: int = RETRY_DELAY_S,
        subscriber: Any = None,
    ) -> None:
        self.ingestor = ingestor
        self.subscription = subscription  # projects/<p>/subscriptions/<s>
        self.batch_max = batch_max
        self.retry_delay_s = retry_delay_s
        self.subscriber = subscriber or make_subscriber()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.processed = 0

    def pull_once(self, timeout: float = 5.0) -> int:
        """Pull one batch, store it, acknowledge it; returns how many messages it handled."""
        from google.api_core import exceptions

        try:
            response = self.subscriber.pull(
                request={"subscription": self.subscription, "max_messages": self.batch_max},
                timeout=timeout,
            )
        except exceptions.DeadlineExceeded:
            return 0
        received = list(response.received_messages)
        if not received:
            return 0
        items = [
            Incoming(
                source=self.subscription,
                device_id=r.message.attributes.get("deviceID"),
                subtopic=r.message.attributes.get("subtopic"),
                payload=r.message.data,
            )
            for r in received
        ]
        outcomes = self.ingestor.handle_batch(items)
        ack_ids = [r.ack_id for r, o in zip(received, outcomes, strict=True) if not o.retry_later]
        later = [r.ack_id for r, o in zip(received, outcomes, strict=True) if o.retry_later]
        if ack_ids:
            self.subscriber.acknowledge(
                request={"subscription": self.subscription, "ack_ids": ack_ids}
            )
        if later:
            self.subscriber.modify_ack_deadline(
                request={
                    "subscription": self.subscription,
                    "ack_ids": later,
                    "ack_deadline_seconds": self.retry_delay_s,
                }
            )
        self.processed += len(received)
        return len(received)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="pubsub-ingest", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)
            self._thread = None
        self.subscriber.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.pull_once(timeout=1.0)
            except Exception as exc:
                # Nothing of the batch was acked: Pub/Sub gives it again (to this subscriber or
                # another on the same subscription) once its ack deadline has passed.
                log.error(
                    "pull from %s failed; retrying: %s",
                    self.subscription,
                    one_line(str(exc)) or type(exc).__name__,
                )
                self._stop.wait(1.0)
