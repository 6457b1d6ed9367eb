"""The uplink room of the agent: the uplink thread (the drain, inside sync sessions), the
radio switch, the heartbeat, and the ``camtrap sync`` request file. ``Agent`` creates one and
calls start/stop.

Sync windows (``uplink.sync_windows``, docs/uplink.md): outside them the trap does not
connect. When a window opens the room switches the radio on, the drain connects and sends,
the heartbeat goes at once with the device events queued since the last window, and the cloud's
retained config and queued commands come down. When it closes, the items in flight go back to
the outbox, the link says goodbye (a retained ``offline`` status) and the radio goes off. No
windows: the link may be used at any time and the radio is left alone, as before windows.
A window with no network at all keeps the radio on to its end (the drain backs off, up to a
minute between tries): the window bounds what that costs, and a network may come.
``camtrap sync`` and the ``sync-now`` command open a session outside the windows for one sync
(``device.uplink.session``).

The room is lent only what it uses (small Protocols below), never the agent: the settings, the
store's database, the store room's retention figures for the heartbeat, the wall-clock probe
and the serving model's version. The agent registers ``on_commit`` as a commit listener and
``report_disk`` as retention's disk-full reporter; retention and the data-dir run lock are the
agent's, not this room's.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from device.clock import SYSTEM_CLOCK, MonotonicClock
from device.contracts.windows import Schedule
from device.power.radio import RadioSwitch, open_radio
from device.runlock import SYNC_REQUEST
from device.store.outbox import Outbox
from device.telemetry import Heartbeat
from device.uplink.connectivity import probe_from_settings
from device.uplink.drain import Drain
from device.uplink.policy import SyncPolicy
from device.uplink.session import SyncSessions
from device.uplink.transport import Transport

if TYPE_CHECKING:
    from device.clock import ClockProbe
    from device.config import Settings
    from device.power.counters import EnergyCounters
    from device.power.report import PowerReport
    from device.store.db import Database
    from device.store.store import CommitResult

log = logging.getLogger("camtrap.uplink")

REQUEST_POLL_S = 1.0
# Outside a session the thread only looks for a ``camtrap sync`` request file (and a window
# opening). ``camtrap sync`` signals the agent (SIGUSR1), which looks at once; this is the
# longest a request waits when the signal could not be sent (another user's shell).
CLOSED_POLL_S = 30.0
# A round that failed (a database hiccup) waits this long before the next one.
FAILED_ROUND_WAIT_S = 2.0
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


def make_drain(
    settings: Settings,
    db: Database,
    transport: Transport,
    *,
    clock: MonotonicClock = SYSTEM_CLOCK,
    wall_clock: Callable[[], float] = time.time,
) -> Drain:
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
        clock=clock,
        wall_clock=wall_clock,
    )


def sync_schedule(settings: Settings) -> Schedule:
    return Schedule.parse(settings.uplink.sync_windows, settings.device.timezone)


class UplinkRoom:
    """``counters`` hears the radio switch; ``radio`` defaults to the one ``uplink.radio_control``
    names. ``clock`` (monotonic) and ``wall_clock`` (unix seconds) time the windows, the
    drain and the request file, so tests drive them without sleeping."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: DatabaseSource,
        retention: RetentionFigures,
        clock: ClockProbe,
        model_version: Callable[[], str | None],
        counters: EnergyCounters | None = None,
        radio: RadioSwitch | None = None,
        mono_clock: MonotonicClock = SYSTEM_CLOCK,
        wall_clock: Callable[[], float] = time.time,
        transport_factory: Callable[[Settings], Transport] = make_transport,
        power: Callable[[], PowerReport | None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.retention = retention
        self.model_version = model_version
        self.mono = mono_clock
        self.wall_clock = wall_clock
        self.transport_factory = transport_factory
        self.radio = radio if radio is not None else open_radio(settings.uplink, counters)
        self.sessions = SyncSessions(self._schedule, clock=mono_clock, wall_clock=wall_clock)
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
            power=power,
            battery_wh=settings.power.battery_wh,
        )
        # Low-battery shedding's first step: blank media stays queued (SyncPolicy).
        self._shed_blank_media = False
        self.transport: Transport | None = None
        self.drain: Drain | None = None
        self.thread: UplinkThread | None = None
        self.session_open = False
        # What this room last asked of the radio; None: nothing yet (the radio as we found it).
        self._radio_wanted: bool | None = None
        self._schedule_key: tuple[tuple[str, ...], str] | None = None
        self._schedule_cache = Schedule(())
        self._request_checked = -REQUEST_POLL_S
        self._reported: tuple[int, str | None] | None = None  # (items done, model) last told
        self._last_done = (0, 0.0)  # (items done, monotonic time it last changed)

    def start(self, on_transport: Callable[[Transport], None] | None = None) -> None:
        """After the store opened. ``on_transport`` sees the link before it connects."""
        db = self.store.db
        if db is not None:
            Outbox(db).recover_inflight()
        if self.settings.uplink.transport == "none" or db is None:
            return
        self.transport = self.transport_factory(self.settings)
        if on_transport is not None:
            on_transport(self.transport)
        self.drain = make_drain(
            self.settings, db, self.transport, clock=self.mono, wall_clock=self.wall_clock
        )
        self.drain.policy.shed_blank_media = self._shed_blank_media
        self.drain.tick_hooks += [self._report_changes, self.heartbeat.tick]
        # When each hook next has work, so an idle online drain sleeps until then.
        self.drain.tick_due += [self._report_due, self._heartbeat_due]
        self.thread = UplinkThread(self)
        self.thread.start()

    def shed_blank_media(self, shed: bool) -> None:
        """Battery shedding: while True, blank media waits in the outbox (metadata and animal
        frames still go); safe from any thread."""
        self._shed_blank_media = shed
        if self.drain is not None:
            self.drain.policy.shed_blank_media = shed

    def stop(self) -> None:
        if self.thread is not None:
            self.thread.stop()
            self.thread = None
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        if self._radio_wanted is False:
            # Left off, the radio would stay off (NetworkManager keeps its state across a
            # reboot) with nobody to switch it on: a stopped agent leaves the trap reachable.
            log.info("radio back on: the agent stops")
            self.radio.on()
            self._radio_wanted = True

    def sync_now(self) -> str:
        """Every queued item due now, and the drain woken (the ``sync-now`` command); outside
        the sync windows this opens a session for the sync."""
        if self.drain is None:
            return "uplink is off"
        Outbox(self.drain.db).due_now()
        self.sessions.ask("sync-now command")
        self.drain.wake()
        return "draining"

    # -- the uplink thread -------------------------------------------------------------------

    def round(self) -> None:
        """One turn of the uplink thread: open or close the session the windows (or a sync
        asked for) want, then one drain step inside it, or a wait outside it."""
        drain = self.drain
        assert drain is not None, "round() before start()"
        self._check_request()
        wanted, why = self.sessions.wanted()
        if wanted and not self.session_open:
            self._open_session(why)
        elif not wanted and self.session_open:
            self._close_session(why)
        if self.session_open:
            drain.step()
            if self.sessions.on_demand and self._sync_done():
                self.sessions.finished()
                log.info("the sync asked for is done")
            return
        self._want_radio(False)
        self.mono.wait(drain.wakeup, self._closed_wait())
        drain.wakeup.clear()

    def end_session(self, why: str) -> None:
        """The thread stops: items in flight go back to the outbox (the transport is closed by
        ``stop``)."""
        if self.drain is not None:
            self.drain.close()
        self.session_open = False
        log.debug("uplink session ended: %s", why)

    def _open_session(self, why: str) -> None:
        assert self.drain is not None
        if not self.sessions.always:
            log.info("sync session opens: %s", why)
        self._want_radio(True)
        self.session_open = True
        # The heartbeat goes at once, with every device event queued since the last session.
        self.heartbeat.next_at = 0.0
        self.drain.wake()

    def _close_session(self, why: str) -> None:
        assert self.drain is not None and self.transport is not None
        log.info("sync session closes: %s", why)
        self.drain.close()  # in-flight items back to the outbox
        self.transport.close()  # a retained "offline" status, then no link
        self.session_open = False
        self._want_radio(False)

    def _want_radio(self, on: bool) -> None:
        """Switch the radio only when what we want changes: a failed switch is one log line,
        not one per round. Without windows the radio is left as found."""
        if self._radio_wanted == on or (self._radio_wanted is None and on and self.sessions.always):
            return
        self._radio_wanted = on
        if on:
            self.radio.on()
        else:
            self.radio.off()

    def _closed_wait(self) -> float:
        until = self.sessions.seconds_until_open()
        return max(0.05, CLOSED_POLL_S if until is None else min(CLOSED_POLL_S, until))

    def _sync_done(self) -> bool:
        """Online, nothing left the drain may send, and the heartbeat saying so has gone."""
        assert self.drain is not None
        p = self.drain.progress
        told = self._reported is not None and self._reported[0] == p.items_done
        return p.online and self.drain.idle() and told

    def _schedule(self) -> Schedule:
        """The sync windows now (remote config may change them while we run)."""
        key = (tuple(self.settings.uplink.sync_windows), self.settings.device.timezone)
        if key != self._schedule_key:
            self._schedule_cache = sync_schedule(self.settings)
            self._schedule_key = key
        return self._schedule_cache

    # -- what the agent registers ------------------------------------------------------------

    def on_commit(self, result: CommitResult) -> None:
        """A commit listener: new media or a closed event wakes the drain (outside a session
        it only waits for the next one)."""
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

    # -- drain tick hooks and the request file -----------------------------------------------

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
            self._last_done = (now[0], self.mono.monotonic())
        # Sent items since the last report, and the drain idle, or nothing sent for a while
        # (the window may hold items the policy keeps back, so idle() can stay False).
        settled = self.mono.monotonic() - self._last_done[1] >= REPORT_SETTLE_S
        drained = now[0] != self._reported[0] and (self.drain.idle() or settled)
        if drained or now[1] != self._reported[1]:
            self._reported = now
            self.heartbeat.next_at = 0.0

    def _report_due(self) -> float | None:
        """When ``_report_changes`` may send: the settle time after the last item sent."""
        if self.drain is None or self._reported is None:
            return None
        if self.drain.progress.items_done == self._reported[0]:
            return None  # a model change waits for the next wake (at most IDLE_CEILING_S)
        return self._last_done[1] + REPORT_SETTLE_S

    def _heartbeat_due(self) -> float | None:
        """The heartbeat's next send on the drain's clock (it keeps ``time.monotonic``)."""
        now = self.mono.monotonic()
        if self.heartbeat.events:
            return now
        return now + max(0.0, self.heartbeat.next_at - time.monotonic())

    def sync_requested(self) -> None:
        """``camtrap sync`` signalled the agent (SIGUSR1): look for its request file now."""
        self._request_checked = float("-inf")
        if self.drain is not None:
            self.drain.wake()

    def _check_request(self) -> None:
        """``camtrap sync`` while the agent runs: it leaves a request file; we act on it, in
        or out of a sync window."""
        now = self.mono.monotonic()
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
        self.sessions.ask("camtrap sync")
        self.drain.wake()
        path.unlink(missing_ok=True)
        log.info(
            "sync requested: every queued item is due now (all kinds: %s)",
            self.drain.policy.override_all,
        )


class UplinkThread(threading.Thread):
    """The agent's background uplink: ``UplinkRoom.round`` until stopped."""

    def __init__(self, room: UplinkRoom) -> None:
        super().__init__(name="uplink-drain", daemon=True)
        self.room = room
        self._stop_flag = threading.Event()

    def run(self) -> None:
        while not self._stop_flag.is_set():
            try:
                self.room.round()
            except Exception:
                # A database hiccup must not end uploads for good; the outbox keeps the truth.
                log.exception("uplink round failed")
                self.room.mono.wait(self._stop_flag, FAILED_ROUND_WAIT_S)
        try:
            self.room.end_session("agent stopping")
        except Exception:
            log.exception("could not hand in-flight items back")

    def stop(self, timeout: float = 10.0) -> None:
        self._stop_flag.set()
        if self.room.drain is not None:
            self.room.drain.wakeup.set()
        self.join(timeout)
