"""The agent: wires the rooms together and runs them.

    PIR (gpiozero thread) --trigger--> CaptureLoop (thread) --frames--> StoreWriter (thread)
        --committed events--> later rooms (vision, uplink)

``camtrap run`` and ``camtrap simulate`` both drive this same class.

The agent owns what several rooms share (the data-dir run lock, retention, the one gpiozero pin
factory, the commit listeners) and lends each room only the few things it uses: no room is
handed the agent itself.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from device import __version__, sdnotify
from device.capture.loop import CaptureLoop, IrControl, NoIr
from device.capture.types import CapturedFrame, EventClosed
from device.clock import SYSTEM_CLOCK, ClockProbe, MonotonicClock
from device.config import Settings
from device.hardware.camera import Camera, open_camera
from device.hardware.gpio import make_pin_factory
from device.hardware.pir import PirSensor
from device.importer.room import ImportRoom, MountWatcher
from device.ota import agent_hooks
from device.ota.remote_commands import AgentCallbacks
from device.power.camera_power import CameraPower
from device.power.counters import EnergyCounters
from device.power.room import PowerRoom
from device.runlock import RunLock
from device.store.retention import Retention
from device.store.store import CommitResult, MediaStore
from device.store.writer import StoreWriter
from device.uplink.service import UplinkRoom
from device.vision.site_memory import FILE_NAME as SITE_MEMORY_FILE
from device.vision.site_memory import SiteMemory, site_of
from device.vision.worker import ClassificationWorker

if TYPE_CHECKING:
    from gpiozero.pins import Factory

    from device.ota.service import OtaService
    from device.power.wake import SleepPlan
    from device.uplink.transport import Transport

log = logging.getLogger("camtrap.agent")


@dataclass(frozen=True)
class AgentShedding:
    """The low-battery steps (device/power/shedding.py) as the agent's rooms switch them."""

    send_blank_media: Callable[[bool], None]
    classify: Callable[[bool], None]
    timelapse: Callable[[bool], None]
    shut_down: Callable[[], None]


VISION_DRAIN_S = 20.0


class Agent:
    """``timer`` keeps capture's intervals (tests pass a fake one); ``camera`` replaces the
    configured one (tests)."""

    def __init__(
        self,
        settings: Settings,
        *,
        camera: Camera | None = None,
        timer: MonotonicClock = SYSTEM_CLOCK,
    ) -> None:
        if settings.ota.enabled:
            # The last remote config the cloud sent (remote keys only) applies from the start.
            agent_hooks.apply_persisted_config(settings)
        self.settings = settings
        self.ota: OtaService | None = None
        self.restart_requested = False
        self.clock = ClockProbe(settings.clock)
        self.store = MediaStore(settings)
        self.run_lock = RunLock(settings.storage.data_dir)
        self.committed_listeners: list[Callable[[CommitResult], None]] = []
        self.writer = StoreWriter(
            self.store,
            batch_max=settings.storage.commit_batch_max,
            on_committed=self._on_committed,
        )
        self._pins: Factory | None = None
        self.camera = camera if camera is not None else open_camera(settings.camera)
        self.ir = self._open_ir()
        self.vision: ClassificationWorker | None = None
        # The site's empty scene as the model sees it, per deployment, under the data dir; the
        # vision worker loads it when it starts (after the store has opened the card).
        self.site_memory = SiteMemory(
            settings.vision.site_memory_size,
            site_of(settings),
            settings.storage.data_dir / SITE_MEMORY_FILE,
        )
        if settings.vision.enabled:
            self.vision = ClassificationWorker(
                settings, self.store, None, site_memory=self.site_memory
            )
            self.committed_listeners.append(self._classify_closed)
        # What camtrap energy multiplies: camera-on seconds, captures (and, wired by their
        # rooms, radio-on seconds and CPU by room). One for the agent, lent to each room.
        self.energy = EnergyCounters(clock=timer.monotonic)
        # The power profile's camera policy: start() starts the camera (a trap without one
        # fails there, whatever the profile); the loop then stops it if the profile says so.
        self.camera_power = CameraPower(
            settings, self.camera, timer=timer, counters=self.energy, running=False
        )
        self.capture = CaptureLoop(
            settings,
            self.camera,
            self._on_frame,
            self.clock,
            self.ir,
            timer=timer,
            power=self.camera_power,
            counters=self.energy,
        )
        # Retention keeps the card from filling; what it reports goes up with the heartbeat.
        self.retention = Retention(settings, lambda: self.store.db, self._report_disk)
        self._spool_reported = False
        self.uplink = UplinkRoom(  # drain, heartbeat, sync requests (docs/uplink.md)
            settings,
            store=self.store,
            retention=self.retention,
            clock=self.clock,
            model_version=self._model_version,
            counters=self.energy,
            power=lambda: self.power.report(),
        )
        self.committed_listeners += [self._retain, self.uplink.on_commit]
        # The battery monitor and its shedding steps, wake alarms, power-state.json
        # (docs/power.md). What runs after a clean stop: a shutdown before brown-out, or a
        # halt until the next window; None: exit as usual.
        self.power_off_command: list[str] | None = None
        self.power = PowerRoom(
            settings,
            self.energy,
            effects=AgentShedding(
                send_blank_media=lambda allowed: self.uplink.shed_blank_media(not allowed),
                classify=self._classify_allowed,
                timelapse=lambda allowed: self.capture.suspend_timelapse(not allowed),
                shut_down=self._battery_empty,
            ),
            radio_on=lambda: self.uplink.radio.is_on,
            clock_synced=lambda: self.clock.state().synced,
            on_sleep=self._sleep_until,
            clock=timer,
        )
        # Photos from trail-camera cards: asked by `camtrap import`, or cards as they are
        # mounted (import.watch); committed through the same listeners as captures.
        self.importer = ImportRoom(
            settings, self.store, self._on_committed, cards=self._card_watcher()
        )
        # A damaged database rebuilt at open is an operator event, sent with the heartbeat.
        self.store.recovery_listeners.append(self.uplink.heartbeat.report_recovery)
        self.pir: PirSensor | None = None
        self._stop = threading.Event()

    # -- hardware ----------------------------------------------------------------------------

    def _pin_factory(self) -> Factory:
        """The trap's one gpiozero pin factory, made when its first GPIO device opens (the IR
        light here in __init__, else the PIR in start), so a trap without GPIO fails at the
        same step as when gpiozero made its own default."""
        if self._pins is None:
            self._pins = make_pin_factory(self.settings.pir)
        return self._pins

    def _open_ir(self) -> IrControl:
        if self.settings.ir.pin is None:
            return NoIr()
        from device.hardware.ir import IrLight

        return IrLight(self.settings.ir, pin_factory=self._pin_factory())

    def _card_watcher(self) -> MountWatcher | None:
        if not self.settings.import_.watch:
            return None
        from device.importer.mounts import CardWatcher

        return CardWatcher(self.settings.import_.watch_roots)

    def _lock_data_dir(self) -> None:
        """Before the store opens: wait for a running ``camtrap sync`` to let go."""
        try:
            if not self.run_lock.acquire(blocking=False):
                log.warning("camtrap sync holds the database; waiting for it to finish")
                self.run_lock.acquire(blocking=True)
        except OSError as exc:
            log.warning("no run lock in %s: %s", self.settings.storage.data_dir, exc)

    # -- between the rooms -------------------------------------------------------------------

    def _on_frame(self, item: CapturedFrame | EventClosed) -> None:
        """Capture's only door: a queue put for the store, and the analysis plane kept for
        vision (it is not stored on disk)."""
        self.writer.submit(item)
        if self.vision is not None and isinstance(item, CapturedFrame):
            self.vision.remember_lores(item.media_id, item.frame.lores)

    def _classify_closed(self, result: CommitResult) -> None:
        assert self.vision is not None
        for event_id in result.closed_events:
            self.vision.submit(event_id)

    def _retain(self, result: CommitResult) -> None:
        """Retention after every commit. A store spooling to RAM (no usable data dir) is
        reported once, as a full disk, until it writes to the card again."""
        if self.store.db is None:
            if not self._spool_reported:
                self._spool_reported = True
                self._report_disk(True, "data dir unusable; captures spool to RAM")
            return
        self._spool_reported = False
        self.retention.after_commit(result.committed_media)

    def _report_disk(self, full: bool, message: str) -> None:
        self.uplink.report_disk(full, message)

    def _model_version(self) -> str | None:
        """The pack serving now, ``name@version``, as the heartbeat reports it."""
        engine = self.vision.engine if self.vision is not None else None
        return engine.classified_by if engine is not None else None

    def _load_vision(self) -> None:
        """The pack OTA installed (``current``, else ``previous``), else ``vision.pack``; a
        pack that cannot serve leaves the agent capturing, its events unclassified."""
        assert self.vision is not None
        engine = agent_hooks.load_engine(self.settings)
        self.vision.serve(engine)
        if engine is None:
            log.error("no model serving: events stay unclassified until a pack installs")
            return
        log.info(
            "model loaded",
            extra={"model": engine.classified_by, "load_ms": round(engine.load_ms, 1)},
        )

    def _attach_ota(self, transport: Transport) -> None:
        """Before the link connects: desired-model/config and commands reach OTA."""
        if self.settings.ota.enabled:
            self.ota = agent_hooks.attach(
                self.settings, transport, self.command_callbacks(), worker=self.vision
            )

    def command_callbacks(self) -> AgentCallbacks:
        """What each remote command does here (device/ota/remote_commands.py)."""
        return AgentCallbacks(
            sync_now=self.uplink.sync_now,
            capture_test=self.capture_test,
            restart_agent=self.restart,
            reset_site_memory=self.reset_site_memory,
            config_applied=lambda _changed: self.capture.config_changed(),
        )

    def capture_test(self) -> str:
        """The ``capture-test`` command: one frame, kept and sent at the top priority."""
        self.capture.trigger("test")
        return "triggered"

    def reset_site_memory(self) -> str:
        """The ``reset-site-memory`` command: forget the remembered empty scene."""
        forgotten = self.site_memory.reset("remote command")
        return f"forgot {forgotten} frames"

    def restart(self) -> None:
        """The ``restart-agent`` command: stop cleanly, and exit so systemd starts us again."""
        self.restart_requested = True
        self.request_stop()

    # -- power -------------------------------------------------------------------------------

    def _classify_allowed(self, allowed: bool) -> None:
        """Battery shedding's second step: events queue unclassified (never lost)."""
        if self.vision is None:
            return
        if allowed:
            self.vision.resume()
        else:
            self.vision.pause()

    def _battery_empty(self) -> None:
        """The last step: stop cleanly (every capture committed, the database closed) and
        power off before the battery browns out and corrupts the card."""
        self.uplink.heartbeat.report(
            "battery_shutdown", "error", "battery below battery.shutdown_pct: powering off"
        )
        log.error("battery nearly empty: stopping cleanly and powering off")
        self.power_off_command = list(self.settings.battery.shutdown_command)
        self.request_stop()

    def _sleep_until(self, plan: SleepPlan) -> None:
        """No window for a long while: the wake is armed; stop cleanly and halt."""
        self.uplink.heartbeat.report(
            "sleeping", "info", f"halting until {plan.wake_at.isoformat()} (next window)"
        )
        self.power_off_command = list(self.settings.wake.halt_command)
        self.request_stop()

    def _power_off(self) -> None:
        command = self.power_off_command
        if not command:
            return
        log.warning("running %s", " ".join(command))
        try:
            subprocess.run(command, check=True, timeout=60, capture_output=True)
        except (OSError, subprocess.SubprocessError) as exc:
            # The agent has stopped cleanly anyway: the card is safe whatever happens next.
            log.error("%s failed: %s", " ".join(command), exc)

    def _on_committed(self, result: CommitResult) -> None:
        for listener in self.committed_listeners:
            try:
                listener(result)
            except Exception:  # a later room's fault must not stop the store
                log.exception("commit listener failed")

    def start(self) -> None:
        # Hardware first: a trap with no camera or no GPIO stops here, before it has touched
        # the card. A PIR edge before the capture loop runs waits in its queue.
        self.camera.start()
        self.camera_power.started()
        self.pir = PirSensor(
            self.settings.pir,
            lambda: self.capture.trigger("pir"),
            pin_factory=self._pin_factory(),
        )
        self._lock_data_dir()
        self.store.open()
        if self.vision is not None:
            self._load_vision()
            self.vision.start()
            self.vision.catch_up()
        if self.store.db is not None:
            self.retention.resync()
            self.retention.enforce()
        self.power.start()
        self.uplink.start(on_transport=self._attach_ota)
        self.writer.start()
        self.importer.start()
        self.capture.start()
        clock = self.clock.state()
        log.info(
            "agent started",
            extra={
                "version": __version__,
                "device_id": self.settings.device.id,
                "storage": self.store.mode,
                "clock_source": clock.source,
                "clock_synced": clock.synced,
            },
        )
        if not clock.synced:
            log.warning(
                "clock is not synchronised (source: %s); captures are flagged", clock.source
            )

    def stop(self) -> None:
        """Finish the frame in progress, commit everything captured, release hardware."""
        # The power state first, while every room's thread still runs: CPU seconds are read
        # per live thread, and a stopped room's would count as "other".
        self.power.stop()
        if self.pir is not None:
            self.pir.close()
            self.pir = None
        self.capture.stop()
        self.importer.stop()
        self.writer.stop()
        if self.vision is not None:
            # Unfinished events are classified at the next start (catch_up), so a stop
            # never waits long for inference.
            self.vision.wait_idle(VISION_DRAIN_S)
            self.vision.stop()
        self.camera.close()
        self.ir.close()
        if self.ota is not None:
            self.ota.stop()
        self.uplink.stop()
        self.store.close()
        self.run_lock.release()  # only once the database is closed may camtrap sync open it
        if self._pins is not None:
            self._pins.close()
            self._pins = None
        log.info(
            "agent stopped",
            extra={"stored": self.writer.stats.stored, "failed": self.writer.stats.failed},
        )

    def request_stop(self, *_: object) -> None:
        self._stop.set()

    def run_forever(self) -> None:
        """The service: runs until SIGTERM/SIGINT, feeding systemd's watchdog while healthy."""
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        # `camtrap sync` left a request file: the uplink looks now instead of polling for it.
        signal.signal(signal.SIGUSR1, lambda *_: self.uplink.sync_requested())
        self.start()
        sdnotify.notify("READY=1")
        interval = sdnotify.watchdog_interval_s() or 10.0
        while not self._stop.wait(interval):
            if self.healthy():
                sdnotify.notify("WATCHDOG=1")
            else:
                log.error("a worker thread died; withholding the watchdog so systemd restarts us")
        sdnotify.notify("STOPPING=1")
        self.stop()
        self._power_off()

    def healthy(self) -> bool:
        threads = [self.capture, self.writer, self.importer] + (
            [self.vision] if self.vision else []
        )
        return all(t.is_alive() for t in threads)
