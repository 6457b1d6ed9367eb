"""The uplink room of the agent: the drain thread, the heartbeat, and the ``camtrap sync``
request file. ``Agent`` creates one and calls start/stop.

The room is lent only what it uses (small Protocols below), never the agent: the settings, the
store's database, the store room's retention figures for the heartbeat, the wall-clock probe
and the serving model's version. The agent registers ``on_commit`` as a commit listener and
``report_disk`` as retention's disk-full reporter; retention and the data-dir run lock are the
agent's, not this room's.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Protocol

from device.runlock import SYNC_REQUEST
from device.store.outbox import Outbox
from device.telemetry import Heartbeat
from device.uplink.connectivity import probe_from_settings
from device.uplink.drain import Drain, DrainThread
from device.uplink.policy import SyncPolicy
from device.uplink.transport import Transport

if TYPE_CHECKING:
    from collections.abc import Callable

    from device.clock import ClockProbe
    from device.config import Settings
    from device.store.db import Database
    from device.store.store import CommitResult

log = logging.getLogger("camtrap.uplink")

REQUEST_POLL_S = 1.0
# After the last item sent, this long without another one counts as a finished sync.
REPORT_SETTLE_S = 2.0


class DatabaseSource(Protocol):
    """The store's connection: None while captures spool to RAM (no usable data dir)."""

    @property
    def db(self) -> Database | None: ...


class RetentionFigures(Protocol):
    """What the heartbeat reports of the store room's retention."""

    @property
    def media_bytes(self) -> int: ...

    @property
    def disk_full(self) -> bool: ...


def make_transport(settings: Settings) -> Transport:
    if settings.uplink.transport == "pubsub":
        from device.uplink.pubsub import PubSubTransport

        return PubSubTransport.from_settings(settings)
    from device.uplink.mqtt import MqttTransport

    return MqttTransport.from_settings(settings)


def make_drain(settings: Settings, db: Database, transport: Transport) -> Drain:
    up = settings.uplink
    return Drain(
        db,
        transport,
        data_dir=settings.storage.data_dir,
        device_id=settings.device.id,
        vision=settings.vision.enabled,
        policy=SyncPolicy(db, up.metered_policy, up.daily_byte_budget),
        probe=probe_from_settings(up.link_type, up.network_manager),
        window_items=up.window_items,
        window_bytes=up.window_bytes,
        ack_timeout_s=up.ack_timeout_s,
        # The client keeps connecting in the background; a short wait keeps stop() prompt.
        connect_timeout_s=min(2.0, up.mqtt.connect_timeout_s),
    )


class UplinkRoom:
    def __init__(
        self,
        settings: Settings,
        *,
        store: DatabaseSource,
        retention: RetentionFigures,
        clock: ClockProbe,
        model_version: Callable[[], str | None],
    ) -> None:
        self.settings = settings
        self.store = store
        self.retention = retention
        self.model_version = model_version
        self.heartbeat = Heartbeat(
            settings.device.id,
            lambda: self.store.db,
            settings.storage.data_dir,
            clock,
            interval_s=settings.telemetry.interval_s,
            thermal_dir=settings.telemetry.thermal_dir,
            uptime_file=settings.telemetry.uptime_file,
            model_version=model_version,
            media_bytes=lambda: self.retention.media_bytes,
            disk_full=lambda: self.retention.disk_full or self.store.db is None,
        )
        self.transport: Transport | None = None
        self.drain: Drain | None = None
        self.thread: DrainThread | None = None
        self._request_checked = 0.0
        self._reported: tuple[int, str | None] | None = None  # (items done, model) last told
        self._last_done = (0, 0.0)  # (items done, monotonic time it last changed)

    def start(self, on_transport: Callable[[Transport], None] | None = None) -> None:
        """After the store opened. ``on_transport`` sees the link before it connects."""
        db = self.store.db
        if db is not None:
            Outbox(db).recover_inflight()
        if self.settings.uplink.transport == "none" or db is None:
            return
        self.transport = make_transport(self.settings)
        if on_transport is not None:
            on_transport(self.transport)
        self.drain = make_drain(self.settings, db, self.transport)
        self.drain.tick_hooks += [self._report_changes, self.heartbeat.tick, self._check_request]
        self.thread = DrainThread(self.drain)
        self.thread.start()

    def stop(self) -> None:
        if self.thread is not None:
            self.thread.stop()
            self.thread = None
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    def sync_now(self) -> str:
        """Every queued item due now, and the drain woken (the ``sync-now`` command)."""
        if self.drain is None:
            return "uplink is off"
        Outbox(self.drain.db).due_now()
        self.drain.wake()
        return "draining"

    # -- what the agent registers ------------------------------------------------------------

    def on_commit(self, result: CommitResult) -> None:
        """A commit listener: new media or a closed event wakes the drain."""
        if self.store.db is None:
            return
        if self.drain is not None and (result.committed_media or result.closed_events):
            self.drain.wake()

    def report_disk(self, full: bool, message: str) -> None:
        """Retention's reporter: the card filled up (or has room again); sent with the
        heartbeat."""
        if full:
            self.heartbeat.report("disk_full", "error", message)
        else:
            self.heartbeat.report("disk_ok", "info", message)

    # -- drain tick hooks --------------------------------------------------------------------

    def _report_changes(self, transport: Transport) -> None:
        """A heartbeat now, not at the next interval, once a sync drained the outbox or the
        model changed (OTA): the fleet page then shows queue 0, the new model, the last sync."""
        if self.drain is None:
            return
        now = (self.drain.progress.items_done, self.model_version())
        if self._reported is None:
            self._reported = now  # the first tick online sends one anyway
            return
        if now[0] != self._last_done[0]:
            self._last_done = (now[0], time.monotonic())
        # Sent items since the last report, and the drain idle, or nothing sent for a while
        # (the window may hold items the policy keeps back, so idle() can stay False).
        settled = time.monotonic() - self._last_done[1] >= REPORT_SETTLE_S
        drained = now[0] != self._reported[0] and (self.drain.idle() or settled)
        if drained or now[1] != self._reported[1]:
            self._reported = now
            self.heartbeat.next_at = 0.0

    def _check_request(self, transport: Transport) -> None:
        """``camtrap sync`` while the agent runs: it leaves a request file; we act on it."""
        now = time.monotonic()
        if now - self._request_checked < REQUEST_POLL_S or self.drain is None:
            return
        self._request_checked = now
        path = self.settings.storage.data_dir / SYNC_REQUEST
        try:
            request = json.loads(path.read_text() or "{}")
        except FileNotFoundError:
            return
        except (OSError, ValueError):
            request = {}
        Outbox(self.drain.db).due_now()
        self.drain.policy.override_all = bool(request.get("all"))
        self.drain.wake()
        path.unlink(missing_ok=True)
        log.info(
            "sync requested: every queued item is due now (all kinds: %s)",
            self.drain.policy.override_all,
        )
