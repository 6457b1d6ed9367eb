"""The agent: wires the rooms together and runs them.

    PIR (gpiozero thread) --trigger--> CaptureLoop (thread) --frames--> StoreWriter (thread)
        --committed events--> later rooms (vision, uplink)

``camtrap run`` and ``camtrap simulate`` both drive this same class.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import TYPE_CHECKING

from device import __version__, sdnotify
from device.capture.loop import CaptureLoop, IrControl, NoIr
from device.capture.types import CapturedFrame, EventClosed
from device.clock import ClockProbe
from device.config import Settings
from device.hardware.camera import Camera, open_camera
from device.hardware.pir import PirSensor
from device.ota import agent_hooks
from device.store.store import CommitResult, MediaStore
from device.store.writer import StoreWriter
from device.uplink.service import UplinkRoom
from device.vision.worker import ClassificationWorker

if TYPE_CHECKING:
    from collections.abc import Callable

    from device.ota.service import OtaService
    from device.uplink.transport import Transport

log = logging.getLogger("camtrap.agent")

VISION_DRAIN_S = 20.0


def open_ir(settings: Settings) -> IrControl:
    if settings.ir.pin is None:
        return NoIr()
    from device.hardware.ir import IrLight

    if settings.pir.pin_factory == "mock":
        from device.hardware.pir import use_mock_pins

        use_mock_pins()
    return IrLight(settings.ir)


class Agent:
    def __init__(self, settings: Settings, *, camera: Camera | None = None) -> None:
        if settings.ota.enabled:
            # The last remote config the cloud sent (remote keys only) applies from the start.
            agent_hooks.apply_persisted_config(settings)
        self.settings = settings
        self.ota: OtaService | None = None
        self.restart_requested = False
        self.clock = ClockProbe(settings.clock)
        self.store = MediaStore(settings)
        self.committed_listeners: list[Callable[[CommitResult], None]] = []
        self.writer = StoreWriter(
            self.store,
            batch_max=settings.storage.commit_batch_max,
            on_committed=self._on_committed,
        )
        self.camera = camera if camera is not None else open_camera(settings.camera)
        self.ir = open_ir(settings)
        self.vision: ClassificationWorker | None = None
        if settings.vision.enabled:
            self.vision = ClassificationWorker(settings, self.store, None)
            self.committed_listeners.append(self._classify_closed)
        self.capture = CaptureLoop(settings, self.camera, self._on_frame, self.clock, self.ir)
        self.uplink = UplinkRoom(self)  # retention, drain, heartbeat (docs/uplink.md)
        # A damaged database rebuilt at open is an operator event, sent with the heartbeat.
        self.store.recovery_listeners.append(self.uplink.heartbeat.report_recovery)
        self.pir: PirSensor | None = None
        self._stop = threading.Event()

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

    def _load_vision(self) -> None:
        """The pack OTA installed (``current``, else ``previous``), else ``vision.pack``; a
        pack that cannot serve leaves the agent capturing, its events unclassified."""
        assert self.vision is not None
        self.vision.engine = agent_hooks.load_engine(self.settings)
        if self.vision.engine is None:
            log.error("no model serving: events stay unclassified until a pack installs")
            return
        log.info(
            "model loaded",
            extra={
                "model": self.vision.engine.classified_by,
                "load_ms": round(self.vision.engine.load_ms, 1),
            },
        )

    def _attach_ota(self, transport: Transport) -> None:
        """Before the link connects: desired-model/config and commands reach OTA."""
        if self.settings.ota.enabled:
            self.ota = agent_hooks.attach(self, transport)

    def capture_test(self) -> str:
        """The ``capture-test`` command: one frame, kept and sent at the top priority."""
        self.capture.trigger("test")
        return "triggered"

    def restart(self) -> None:
        """The ``restart-agent`` command: stop cleanly, and exit so systemd starts us again."""
        self.restart_requested = True
        self.request_stop()

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
        self.pir = PirSensor(self.settings.pir, lambda: self.capture.trigger("pir"))
        self.uplink.lock_data_dir()
        self.store.open()
        if self.vision is not None:
            self._load_vision()
            self.vision.start()
            self.vision.catch_up()
        self.uplink.start(on_transport=self._attach_ota)
        self.writer.start()
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
        if self.pir is not None:
            self.pir.close()
            self.pir = None
        self.capture.stop()
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

    def healthy(self) -> bool:
        threads = [self.capture, self.writer] + ([self.vision] if self.vision else [])
        return all(t.is_alive() for t in threads)
