"""Ingest over MQTT: the privileged ``ingest`` client reads ``camtrap/+/up/#``.

Several workers split that stream as one MQTT v5 shared subscription
(``$share/<group>/camtrap/+/up/#``), each with its own client id and persistent session.

paho's network thread decodes each message (hashing a chunk is the costliest part, and hashlib
lets the worker run meanwhile) and queues it; one worker thread takes them in batches, commits
each batch once (fsync is the slow part), then publishes the app acks and only then PUBACKs the
broker (``manual_ack``). If ingest dies before that PUBACK, the broker redelivers from our
persistent session; if it dies after, the data was already committed.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cloud_stub.ingest.core import (
    DEFAULT_MAX_MESSAGE_BYTES,
    Incoming,
    Ingestor,
    decode_early,
)
from device.contracts import protocol
from device.contracts.errors import one_line
from device.contracts.protocol import Ack, AckBatch, ErrorReply, ProtocolError

log = logging.getLogger(__name__)

UP_FILTER = f"{protocol.TOPIC_ROOT}/+/up/#"
RETRY_MAX_WAIT_S = 30.0
# A lone ingest keeps its session for a week: what came while it was down waits for it.
SESSION_EXPIRY_S = 7 * 24 * 3600
# mosquitto keeps giving a disconnected member of a share group its turn, into its session, so
# a dead worker would swallow 1/N of the stream for as long as its session lives. Two minutes
# covers a restart; after that the broker forgets it and the devices resend what it held (it
# acked none of it).
SHARED_SESSION_EXPIRY_S = 120


class MqttIngest:
    def __init__(
        self,
        ingestor: Ingestor,
        *,
        host: str,
        port: int,
        ca_file: Path | None,
        cert_file: Path | None,
        key_file: Path | None,
        client_id: str = "camtrap-ingest",
        session_expiry_s: int | None = None,
        batch_max: int = 256,
        share_group: str | None = None,
        first_retry_wait_s: float = 1.0,
    ) -> None:
        self.ingestor = ingestor
        # The network thread decodes with the ingestor's own limit (a stand-in may have none).
        self.max_message_bytes: int = getattr(
            ingestor, "max_message_bytes", DEFAULT_MAX_MESSAGE_BYTES
        )
        # Several workers split one stream with an MQTT v5 shared subscription: the broker gives
        # each message to one member of the group (docs/scale.md).
        self.topic_filter = f"$share/{share_group}/{UP_FILTER}" if share_group else UP_FILTER
        self.host, self.port = host, port
        if session_expiry_s is None:
            session_expiry_s = SHARED_SESSION_EXPIRY_S if share_group else SESSION_EXPIRY_S
        self.session_expiry_s = session_expiry_s
        self.batch_max = batch_max
        self.first_retry_wait_s = first_retry_wait_s
        self._inbox: queue.Queue[tuple[mqtt.MQTTMessage, Incoming]] = queue.Queue()
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._worker: threading.Thread | None = None
        self.processed = 0
        self.max_reply_bytes = 64 * 1024

        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,
        )
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        if cert_file:
            context.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
        client.tls_set_context(context)
        client.max_inflight_messages_set(256)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self.client = client

    def start(self, timeout: float = 15.0) -> None:
        """Connect, subscribe and start the worker; returns once the subscription is granted."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry_s
        self.client.connect_async(self.host, self.port, 60, clean_start=False, properties=props)
        self.client.loop_start()
        self._worker = threading.Thread(target=self._work, name="ingest-worker", daemon=True)
        self._worker.start()
        if not self._subscribed.wait(timeout):
            self.stop()
            raise RuntimeError(f"ingest could not subscribe at {self.host}:{self.port}")

    def stop(self) -> None:
        self._stop.set()
        if self._worker is not None:
            self._worker.join(10)
            self._worker = None
        self.client.disconnect()
        self.client.loop_stop()

    # -- paho callbacks ----------------------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        if rc.is_failure:
            log.error("broker refused ingest: %s", rc)
            return
        # Our replies must respect the broker's packet limit just as the devices' messages do.
        limit = getattr(props, "MaximumPacketSize", None)
        self.max_reply_bytes = min(64 * 1024, (limit or 1 << 28) - 256)
        client.subscribe(self.topic_filter, qos=1)

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any, props: Any
    ) -> None:
        if all(not rc.is_failure for rc in reason_codes):
            self._subscribed.set()
        else:
            log.error("subscription to %s refused: %s", self.topic_filter, reason_codes)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._inbox.put((msg, _incoming(msg, self.max_message_bytes)))

    # -- worker ------------------------------------------------------------------------------

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                first = self._inbox.get(timeout=0.2)
            except queue.Empty:
                continue
            batch = [first]
            while len(batch) < self.batch_max:
                try:
                    batch.append(self._inbox.get_nowait())
                except queue.Empty:
                    break
            self._process_until_done(batch)

    def _process_until_done(self, batch: list[tuple[mqtt.MQTTMessage, Incoming]]) -> None:
        """Store and ack ``batch``, trying again while the store is down.

        Nothing of a failed batch was acked, and the broker would resend it only after a
        reconnect, so the batch is kept and tried again here (``handle_batch`` already retried
        a transient failure for about 30 s). A worker that is stopped meanwhile acks nothing:
        the broker gives the messages to this session again, or the device resends them.
        """
        for wait_s in _retry_waits(self.first_retry_wait_s):
            try:
                self._process(batch)
                return
            except Exception as exc:
                log.error(
                    "ingest batch of %d failed, trying again in %.1f s: %s",
                    len(batch),
                    wait_s,
                    one_line(str(exc)) or type(exc).__name__,
                )
                if self._stop.wait(wait_s):
                    return

    def _process(self, batch: list[tuple[mqtt.MQTTMessage, Incoming]]) -> None:
        outcomes = self.ingestor.handle_batch([item for _, item in batch])
        # One message per device for all its acks in this batch: far fewer publishes (and
        # fewer messages for the device to parse) than one per item. Errors go singly.
        acks: dict[str, list[Ack]] = {}
        replies: list[Ack | AckBatch | ErrorReply] = []
        for outcome in outcomes:
            for reply in outcome.replies:
                if isinstance(reply, Ack):
                    acks.setdefault(reply.device_id, []).append(reply)
                else:
                    replies.append(reply)
        for device_acks in acks.values():
            replies.extend(protocol.pack_acks(device_acks, self.max_reply_bytes))
        for message in replies:
            self.client.publish(protocol.topic_for(message), protocol.encode(message), qos=1)
        for msg, _ in batch:
            if msg.qos > 0:
                self.client.ack(msg.mid, msg.qos)
        self.processed += len(batch)


def _retry_waits(first_s: float) -> Iterator[float]:
    """1, 2, 4 ... 30, 30, ... seconds (from ``first_s``): for ever, as ingest has nothing
    better to do than wait for its store."""
    wait_s = first_s
    while True:
        yield wait_s
        wait_s = min(wait_s * 2, RETRY_MAX_WAIT_S)


def _incoming(msg: mqtt.MQTTMessage, max_bytes: int) -> Incoming:
    try:
        device_id, direction, suffix = protocol.parse_topic(msg.topic)
    except ProtocolError:
        device_id, direction, suffix = None, "?", None
    if direction != "up":
        device_id = None
    payload = bytes(msg.payload)
    return Incoming(
        source=msg.topic,
        device_id=device_id,
        subtopic=suffix,
        payload=payload,
        decoded=decode_early(payload, max_bytes) if device_id is not None else None,
    )
