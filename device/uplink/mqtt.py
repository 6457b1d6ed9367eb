"""MQTT v5 link to the fleet broker (paho-mqtt 2.x), shaped by ``transport.Transport``.

Choices and why:

* Client id = device id and ``clean_start=False`` with a session expiry: the broker keeps our
  subscription and queues the acks ingest sends while we are away, so an ack published just
  after a drop still reaches us when we come back.
* A retained ``online`` status on every connect and a retained ``offline`` last will, so the
  cloud always sees the latest presence without polling.
* QoS 1 everywhere. PUBACK only means the broker took the message, not that it is stored
  (mosquitto loses acknowledged messages on SIGKILL): delivery is judged by ingest's app acks.
* paho 2.2 ignores the broker's Maximum Packet Size and would resend an oversize message after
  every reconnect, so we read it from CONNACK ourselves and refuse bigger payloads up front.
* Downlink routing is paho's own: each ``on_downlink`` filter is a ``message_callback_add``
  route under ``camtrap/{device}/down/``, and acks have a route of their own. Every connect
  subscribes to the whole down topic again, so routes need nothing after a reconnect.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from device import __version__, protocol
from device.protocol import Ack, AckBatch, ErrorReply, ProtocolError, Status, UpMessage
from device.uplink.transport import DownlinkHandler, SendHandle, Transport, TransportError

if TYPE_CHECKING:
    from collections.abc import Callable

    from device.config import Settings

log = logging.getLogger(__name__)

# MQTT's own ceiling on a packet (the largest Remaining Length plus the fixed header).
MQTT_PROTOCOL_MAX = 268_435_455 + 5


def publish_overhead(topic: str) -> int:
    """Bytes a QoS 1 MQTT v5 PUBLISH adds to its payload when it carries no properties.

    Fixed header (1) + Remaining Length (at most 4) + topic length (2) + topic + packet id (2)
    + property length (1, for an empty property set).
    """
    return 1 + 4 + 2 + len(topic.encode()) + 2 + 1


# CONNACK reason codes that mean "these credentials may not connect" (MQTT v5 and v3.1.1 mapped).
NOT_AUTHORISED_CODES = {134, 135, 4, 5}
CLOSED_ON_US = "not authorised (the broker closed the connection: client certificate refused?)"


def connect_failure(exc: BaseException) -> str:
    """A short, fixed-vocabulary reason for a failed TCP/TLS connect, for people."""
    if isinstance(exc, socket.gaierror):
        return "name not resolved"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or exc.reason or str(exc)
        return f"TLS verification failed ({detail})"
    if isinstance(exc, ssl.SSLError):
        return tls_failure(str(exc))
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        # mosquitto drops a TLS client whose certificate it does not accept this way.
        return CLOSED_ON_US
    text = getattr(exc, "strerror", None) or str(exc)
    return text or type(exc).__name__


def tls_failure(text: str) -> str:
    lowered = text.lower()
    if "alert" in lowered and any(
        w in lowered
        for w in (
            "unknown ca",
            "unknown_ca",
            "bad certificate",
            "bad_certificate",
            "certificate required",
            "certificate_required",
            "access denied",
            "access_denied",
            "certificate unknown",
            "certificate_unknown",
        )
    ):
        return f"not authorised (the broker refused the client certificate: {text})"
    if "certificate verify failed" in lowered:
        return f"TLS verification failed ({text})"
    return f"TLS failed ({text})"


def refusal(reason_code: Any) -> str:
    """A CONNACK failure in the same vocabulary as ``connect_failure``."""
    value = getattr(reason_code, "value", reason_code)
    if value in NOT_AUTHORISED_CODES:
        return f"not authorised (broker said: {reason_code})"
    return f"refused by the broker ({reason_code})"


class _Client(mqtt.Client):
    """paho's client, telling us why a (re)connect failed (paho's loop thread swallows it),
    and waking its network thread only when it must.

    paho's thread wakes every second: its ``select`` times out after 1 s while connected, and
    it waits to reconnect in 1 s sleeps. A publish from another thread wakes the ``select``
    through paho's socket pair anyway, so the tick only has to keep the keepalive ping on time
    (``tick_s``, a quarter of the keepalive: the broker allows one and a half), and the
    reconnect wait can be one wait on an event that ``disconnect``/``loop_stop`` set.
    """

    connect_error_hook: Callable[[BaseException], None] | None = None
    tick_s: float = 1.0
    _stop_waiting: threading.Event | None = None

    def loop_start(self) -> mqtt.MQTTErrorCode:
        self._stop_waiting = threading.Event()
        return super().loop_start()

    def _thread_main(self) -> None:
        try:
            self.loop_forever(timeout=self.tick_s, retry_first_connection=True)
        finally:
            self._thread = None

    def _reconnect_wait(self) -> None:
        # paho's own backoff (reconnect_delay_set), in one wait instead of 1 s slices.
        with self._reconnect_delay_mutex:
            if self._reconnect_delay is None:
                self._reconnect_delay = self._reconnect_min_delay
            else:
                self._reconnect_delay = min(self._reconnect_delay * 2, self._reconnect_max_delay)
            delay = self._reconnect_delay
        if self._stop_waiting is not None:
            self._stop_waiting.wait(delay)

    def disconnect(
        self, reasoncode: ReasonCode | None = None, properties: Properties | None = None
    ) -> mqtt.MQTTErrorCode:
        if self._stop_waiting is not None:
            self._stop_waiting.set()
        return super().disconnect(reasoncode, properties)

    def loop_stop(self) -> mqtt.MQTTErrorCode:
        # The thread may sit in a long select: say "stop" first, then wake it, then join.
        self._thread_terminate = True
        if self._stop_waiting is not None:
            self._stop_waiting.set()
        if self._sockpairW is not None:
            with suppress(OSError):
                self._sockpairW.send(b"0")
        return super().loop_stop()

    def reconnect(self) -> mqtt.MQTTErrorCode:
        try:
            return super().reconnect()
        except OSError as exc:
            if self.connect_error_hook is not None:
                self.connect_error_hook(exc)
            raise


class MqttSendHandle:
    def __init__(self, item_id: str, info: mqtt.MQTTMessageInfo) -> None:
        self.item_id = item_id
        self.info = info

    def wait(self, timeout: float | None = None) -> bool:
        try:
            self.info.wait_for_publish(timeout)
        except (RuntimeError, ValueError):
            # paho raises when the message was refused locally (no connection, queue full).
            return False
        return self.info.is_published()


class MqttTransport(Transport):
    name = "mqtt"

    def __init__(
        self,
        device_id: str,
        *,
        host: str,
        port: int,
        tls: bool = True,
        ca_file: Path | None = None,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        username: str | None = None,
        password: str | None = None,
        keepalive_s: int = 60,
        session_expiry_s: int = 7 * 24 * 3600,
        max_payload_cap: int = 1024 * 1024,
        max_inflight: int = 64,
        socket_timeout_s: float = 5.0,
    ) -> None:
        super().__init__(device_id)
        self.host, self.port = host, port
        self.endpoint = f"MQTT broker {host}:{port}"
        # Why the link is down, for people (sync's progress, logs): None while connected or
        # before the first attempt. Written on paho's thread, read anywhere (one str, atomic).
        self.offline_reason: str | None = None
        self._attempt_error: str | None = None
        self.keepalive_s = keepalive_s
        self.session_expiry_s = session_expiry_s
        self.max_payload_cap = max_payload_cap
        self._down_prefix = f"{protocol.TOPIC_ROOT}/{device_id}/down/"
        self._connected = threading.Event()
        # Set with every outcome connect() waits for: the session up, or a refusal.
        self._settled = threading.Event()
        self._started = False
        self._broker_max_packet: int | None = None
        self._last_refusal: str | None = None
        self._subscribe_mid: int | None = None
        # The longest up topic bounds the per-message overhead for every message we send.
        self._longest_topic = max(
            (protocol.up_topic(device_id, s) for s in protocol.UP_SUFFIXES), key=len
        )

        client = _Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=device_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        client.connect_error_hook = self._on_connect_error
        client.tick_s = max(1.0, keepalive_s / 4)
        client.connect_timeout = socket_timeout_s
        if tls:
            context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
            if cert_file:
                context.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
            client.tls_set_context(context)
        elif username:
            raise TransportError("refusing to send a password without TLS")
        if username:
            client.username_pw_set(username, password)
        offline = Status(device_id=device_id, state="offline", agent_version=__version__)
        client.will_set(
            protocol.up_topic(device_id, "status"), protocol.encode(offline), qos=1, retain=True
        )
        client.max_inflight_messages_set(max_inflight)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(min_delay=1, max_delay=60)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.message_callback_add(protocol.down_topic(device_id, "ack"), self._on_ack)
        client.on_message = self._on_unrouted
        client.on_log = self._on_log
        self.client = client

    @classmethod
    def from_settings(cls, settings: Settings) -> MqttTransport:
        cfg = settings.uplink.mqtt
        return cls(
            settings.device.id,
            host=cfg.host,
            port=cfg.port,
            tls=cfg.tls,
            ca_file=cfg.ca_file,
            cert_file=cfg.cert_file,
            key_file=cfg.key_file,
            username=cfg.username,
            password=cfg.password.get_secret_value() if cfg.password else None,
            keepalive_s=cfg.keepalive_s,
            socket_timeout_s=min(5.0, max(0.5, float(cfg.connect_timeout_s))),
            session_expiry_s=cfg.session_expiry_s,
            max_payload_cap=settings.uplink.max_payload_bytes,
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def connect(self, timeout: float = 15.0) -> None:
        """Start the link and wait until the broker accepted us.

        On timeout this raises, but the client keeps retrying in the background (with backoff)
        until ``close()``: watch ``on_connection_change`` to learn when it comes up.
        """
        self._last_refusal = None
        self._attempt_error = None
        if not self._started:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.session_expiry_s
            self.client.connect_async(
                self.host, self.port, self.keepalive_s, clean_start=False, properties=props
            )
            self.client.loop_start()
            self._started = True
        deadline = time.monotonic() + timeout
        # One wait, ended by the session (SUBACK) or a refusal: an offline trap's connect
        # attempts must not wake the CPU twenty times a second (docs/power.md).
        while not self._connected.is_set():
            left = deadline - time.monotonic()
            # A refusal (bad credentials, not authorised) will not cure itself: say so now.
            if self._last_refusal or left <= 0:
                why = self._last_refusal or self._attempt_error or "timed out"
                self.offline_reason = f"{self.endpoint}: {why}"
                raise TransportError(f"no MQTT session with {self.host}:{self.port}: {why}")
            self._settled.wait(left)
            self._settled.clear()

    def close(self) -> None:
        """A retained ``offline`` status (when connected), then no link. ``connect()`` again
        starts a new one on the same client: the trap closes its link at every sync window's
        end and opens it at the next one's start."""
        if not self._started:
            return
        if self._connected.is_set():
            offline = Status(device_id=self.device_id, state="offline", agent_version=__version__)
            info = self.client.publish(
                protocol.up_topic(self.device_id, "status"),
                protocol.encode(offline),
                qos=1,
                retain=True,
            )
            MqttSendHandle("", info).wait(5.0)
        self.client.disconnect()
        self.client.loop_stop()
        self._started = False
        self._connected.clear()

    @property
    def is_connected(self) -> bool:
        return self._connected.is_set()

    @property
    def broker_max_packet_size(self) -> int | None:
        """What the broker announced in CONNACK (None: it set no limit)."""
        return self._broker_max_packet

    @property
    def max_payload_bytes(self) -> int:
        packet_max = self._broker_max_packet or MQTT_PROTOCOL_MAX
        return min(self.max_payload_cap, packet_max - publish_overhead(self._longest_topic))

    # -- downlink ----------------------------------------------------------------------------

    def on_downlink(self, topic_filter: str, handler: DownlinkHandler) -> None:
        """One handler per filter, as in paho: the same filter again replaces the handler."""
        self.client.message_callback_add(self._down_prefix + topic_filter, self._routed(handler))
        if self.is_connected:
            # A subscription made again sends the retained messages again, now to this route.
            self.client.subscribe(self._down_prefix + "#", qos=1)

    def _routed(
        self, handler: DownlinkHandler
    ) -> Callable[[mqtt.Client, Any, mqtt.MQTTMessage], None]:
        def deliver(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
            suffix = self._down_suffix(msg.topic)
            if suffix is None or suffix == "ack":
                return
            try:
                handler(suffix, bytes(msg.payload))
            except Exception:
                # paho re-raises callback errors on its network thread, which would end the loop.
                log.exception("downlink handler failed on %s", suffix)

        return deliver

    def _down_suffix(self, topic: str) -> str | None:
        """``ack``, ``model``, ... of one of our down topics; None (logged) for anything else."""
        try:
            device_id, direction, suffix = protocol.parse_topic(topic)
            if device_id != self.device_id or direction != "down":
                raise ProtocolError("bad_topic", topic)
        except ProtocolError as exc:
            log.warning("ignoring downlink message on %s: %s", topic, exc)
            return None
        return suffix

    # -- sending -----------------------------------------------------------------------------

    def _send(self, message: UpMessage, payload: bytes) -> SendHandle:
        retain = isinstance(message, Status)
        info = self.client.publish(protocol.topic_for(message), payload, qos=1, retain=retain)
        return MqttSendHandle(getattr(message, "item_id", ""), info)

    # -- paho callbacks (network thread) -------------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: Any,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self._last_refusal = refusal(reason_code)
            self.offline_reason = f"{self.endpoint}: {self._last_refusal}"
            log.warning("broker refused the connection: %s", reason_code)
            self._settled.set()
            return
        self._last_refusal = None
        self.offline_reason = None
        self._broker_max_packet = getattr(properties, "MaximumPacketSize", None)
        _, self._subscribe_mid = client.subscribe(
            f"{protocol.TOPIC_ROOT}/{self.device_id}/down/#", qos=1
        )
        online = Status(
            device_id=self.device_id,
            state="online",
            agent_version=__version__,
            since=protocol.utc_now(),
        )
        client.publish(
            protocol.up_topic(self.device_id, "status"), protocol.encode(online), qos=1, retain=True
        )
        log.info(
            "connected to %s:%s (session present: %s, max packet: %s)",
            self.host,
            self.port,
            flags.session_present,
            self._broker_max_packet,
        )

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[Any],
        properties: Properties | None,
    ) -> None:
        if mid != self._subscribe_mid:
            return
        if any(rc.is_failure for rc in reason_codes):
            # Sending still works, but no ack can reach us: the outbox will keep resending.
            log.error("broker refused our down-topic subscription: %s", reason_codes)
        # Usable only from here on: an ack published before the SUBACK could miss us.
        self._connected.set()
        self._settled.set()
        self._notify(True)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: Any,
        properties: Properties | None,
    ) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        if was_connected:
            if self.offline_reason is None:
                self.offline_reason = f"{self.endpoint}: connection lost ({reason_code})"
            log.info("disconnected from %s:%s: %s", self.host, self.port, reason_code)
            self._notify(False)

    def _on_connect_error(self, exc: BaseException) -> None:
        why = connect_failure(exc)
        self._attempt_error = why
        self.offline_reason = f"{self.endpoint}: {why}"
        log.debug("connecting to %s:%s failed: %s", self.host, self.port, exc)

    def _on_log(self, client: mqtt.Client, userdata: Any, level: int, buf: str) -> None:
        # A TLS 1.3 server checks our certificate after the handshake: its refusal arrives as
        # an alert on the first read, which paho only logs.
        failed_read = level == mqtt.MQTT_LOG_ERR and "failed to receive on socket" in buf
        if failed_read and not self._connected.is_set():
            detail = buf.split(":", 1)[-1].strip()
            why = tls_failure(detail) if "SSL" in detail or "alert" in detail else detail
            if "reset" in detail.lower():
                why = CLOSED_ON_US
            self._attempt_error = why
            self.offline_reason = f"{self.endpoint}: {why}"

    def _on_ack(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if self._down_suffix(msg.topic) != "ack":
            return
        try:
            reply = protocol.decode(bytes(msg.payload))
            if not isinstance(reply, Ack | AckBatch | ErrorReply):
                raise ProtocolError("unexpected", f"{reply.type} on the ack topic")
            if reply.device_id != self.device_id:
                raise ProtocolError("unexpected", f"{reply.type} for {reply.device_id}")
        except ProtocolError as exc:
            # A bad downlink message must not take the link down; the outbox retries anyway.
            log.warning("ignoring downlink message on %s: %s", msg.topic, exc)
            return
        for event in reply.expand() if isinstance(reply, AckBatch) else [reply]:
            self._emit(event)

    def _on_unrouted(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        # A down message no route asked for (OTA off, or nobody handles the suffix): dropped.
        if self._down_suffix(msg.topic) is not None:
            log.debug("no downlink handler for %s; dropped", msg.topic)
