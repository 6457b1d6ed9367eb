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
from device.clock import ClockProbe
from device.config import Settings
from device.hardware.camera import Camera, open_camera
from device.hardware.pir import PirSensor
from device.store.store import CommitResult, MediaStore
from device.store.writer import StoreWriter

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger("camtrap.agent")


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
        self.settings = settings
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
        self.capture = CaptureLoop(settings, self.camera, self.writer.submit, self.clock, self.ir)
        self.pir: PirSensor | None = None
        self._stop = threading.Event()

    def _on_committed(self, result: CommitResult) -> None:
        for listener in self.committed_listeners:
            try:
                listener(result)
            except Exception:  # a later room's fault must not stop the store
                log.exception("commit listener failed")

    def start(self) -> None:
        self.store.open()
        self.camera.start()
        self.writer.start()
        self.capture.start()
        self.pir = PirSensor(self.settings.pir, lambda: self.capture.trigger("pir"))
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
        self.camera.close()
        self.ir.close()
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
        return self.capture.is_alive() and self.writer.is_alive()
