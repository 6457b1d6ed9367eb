"""Reports of every OTA step, sent up as ``device_event`` messages.

Codes are ``model.<step>.<outcome>``, ``config.<outcome>`` and ``command.<outcome>``; the
message is compact JSON with the details (rollout, version, reason), which is what
``camtrap-cloud model status`` reads back from ingest. A report made while the link is down
waits in memory (bounded) and goes out on the next connect: reports describe the device's
state, so losing an old one on a reboot costs little, and the next attempt reports again.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections import deque
from typing import Any, Literal, Protocol

from device.protocol import DeviceEvent, utc_now
from device.uplink.transport import Transport, TransportError

log = logging.getLogger("camtrap.ota")

Severity = Literal["info", "warning", "error"]
MESSAGE_MAX = 2000
PENDING_MAX = 200


class Reporter(Protocol):
    def __call__(self, code: str, severity: Severity, details: dict[str, Any]) -> None: ...


def report_message(details: dict[str, Any]) -> str:
    text = json.dumps(details, separators=(",", ":"), sort_keys=True, default=str)
    if len(text) <= MESSAGE_MAX:
        return text
    # Shorten the free-text detail, never the fields status is computed from.
    detail = str(details.get("detail", ""))
    cut = max(0, len(detail) - (len(text) - MESSAGE_MAX) - 3)
    return report_message({**details, "detail": detail[:cut] + "..."}) if cut else text[:2000]


def make_event(
    device_id: str, code: str, severity: Severity, details: dict[str, Any]
) -> DeviceEvent:
    return DeviceEvent(
        device_id=device_id,
        item_id=f"ota:{uuid.uuid4()}",
        at=utc_now(),
        severity=severity,
        code=code,
        message=report_message(details),
    )


class TransportReporter:
    """Sends reports on the device's link; queues them while it is down."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self._pending: deque[DeviceEvent] = deque(maxlen=PENDING_MAX)
        self._lock = threading.Lock()
        transport.on_connection_change(self._on_connection)

    def __call__(self, code: str, severity: Severity, details: dict[str, Any]) -> None:
        event = make_event(self.transport.device_id, code, severity, details)
        log.log(
            logging.ERROR if severity == "error" else logging.INFO,
            "ota report %s %s",
            code,
            event.message,
        )
        with self._lock:
            self._pending.append(event)
        self.flush()

    def flush(self) -> int:
        """Send what is waiting; returns how many went out."""
        sent = 0
        while True:
            with self._lock:
                if not self._pending:
                    return sent
                event = self._pending[0]
            try:
                self.transport.send(event)
            except TransportError:
                return sent  # still down: the next connect flushes
            with self._lock:
                if self._pending and self._pending[0] is event:
                    self._pending.popleft()
            sent += 1

    def _on_connection(self, connected: bool) -> None:
        if connected:
            # paho's callback thread must not block; publishing only queues in paho.
            threading.Thread(target=self.flush, name="ota-report-flush", daemon=True).start()
