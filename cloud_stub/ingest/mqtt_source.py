"""Ingest over MQTT: the privileged ``ingest`` client reads ``camtrap/+/up/#``.

paho's network thread only queues messages; one worker thread takes them in batches, commits
each batch once (fsync is the slow part), then publishes the app acks and only then PUBACKs the
broker (``manual_ack``). If ingest dies before that PUBACK, the broker redelivers from our
persistent session; if it dies after, the data was already committed.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cloud_stub.ingest.core import Incoming, Ingestor
from device.contracts import protocol
from device.contracts.protocol import Ack, AckBatch, ErrorReply, ProtocolError

log = logging.getLogger(__name__)

UP_FILTER = f"{protocol.TOPIC_ROOT}/+/up/#"


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
        session_expiry_s: int = 7 * 24 * 3600,
        batch_max: int = 256,
    ) -> None:
        self.ingestor = ingestor
        self.host, self.port = host, port
        self.session_expiry_s = session_expiry_s
        self.batch_max = batch_max
        self._inbox: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
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
        client.subscribe(UP_FILTER, qos=1)

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any, props: Any
    ) -> None:
        if all(not rc.is_failure for rc in reason_codes):
            self._subscribed.set()
        else:
            log.error("subscription to %s refused: %s", UP_FILTER, reason_codes)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._inbox.put(msg)

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
            try:
                self._process(batch)
            except Exception:
                # Nothing was PUBACKed, so the broker redelivers after a reconnect; keep serving.
                log.exception("ingest batch of %d failed", len(batch))

    def _process(self, batch: list[mqtt.MQTTMessage]) -> None:
        items = [_incoming(msg) for msg in batch]
        outcomes = self.ingestor.handle_batch(items)
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
        for msg in batch:
            if msg.qos > 0:
                self.client.ack(msg.mid, msg.qos)
        self.processed += len(batch)


def _incoming(msg: mqtt.MQTTMessage) -> Incoming:
    try:
        device_id, direction, suffix = protocol.parse_topic(msg.topic)
    except ProtocolError:
        device_id, direction, suffix = None, "?", None
    if direction != "up":
        device_id = None
    return Incoming(
        source=msg.topic, device_id=device_id, subtopic=suffix, payload=bytes(msg.payload)
    )
