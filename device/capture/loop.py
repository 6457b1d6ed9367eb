"""The capture loop: triggers become bursts; a schedule becomes timelapse frames.

- A PIR rising edge starts a burst of ``burst_frames`` frames, ``burst_interval_s`` apart.
- A retrigger during a burst extends it (the remaining count starts over), up to
  ``max_burst_frames`` frames in all.
- After a burst, ``cooldown_s`` passes before a new burst may start; triggers that arrive in
  the cooldown are counted, not silently lost.
- Timelapse frames (health checks) are single-frame events with captureMethod ``timeLapse``.

The loop runs on its own thread. The PIR callback only enqueues; the loop only captures and
hands frames to the store's queue.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from device.capture.types import ACTIVITY, TIMELAPSE, CapturedFrame, EventClosed
from device.clock import ClockProbe, local_now
from device.config import Settings
from device.hardware.camera import Camera, CameraError, Frame

log = logging.getLogger("camtrap.capture")


@dataclass(frozen=True)
class Trigger:
    source: str  # pir | timelapse | manual | test
    at_mono: float


@dataclass
class CaptureStats:
    triggers: int = 0
    retriggers: int = 0
    suppressed: int = 0
    events: int = 0
    frames: int = 0
    camera_errors: int = 0


class IrControl(Protocol):
    """What the loop needs of the IR light: decide for the next frame, report the state."""

    def update(self, lores_mean: float | None, now: datetime) -> bool: ...

    @property
    def is_on(self) -> bool: ...

    def close(self) -> None: ...


class NoIr:
    """A trap without an IR illuminator."""

    is_on = False

    def update(self, lores_mean: float | None, now: datetime) -> bool:
        return False

    def close(self) -> None:
        pass


class CaptureLoop(threading.Thread):
    def __init__(
        self,
        settings: Settings,
        camera: Camera,
        sink: Callable[[CapturedFrame | EventClosed], None],
        clock: ClockProbe,
        ir: IrControl | None = None,
    ) -> None:
        super().__init__(name="capture", daemon=True)
        self.settings = settings
        self.camera = camera
        self.sink = sink
        self.clock = clock
        self.ir: IrControl = ir or NoIr()
        self.triggers: queue.Queue[Trigger] = queue.Queue()
        self.stats = CaptureStats()
        self._stopping = threading.Event()
        self._idle = threading.Event()
        self._cooldown_until = 0.0
        interval = settings.capture.timelapse_interval_s
        self._next_timelapse = time.monotonic() + interval if interval > 0 else None

    # -- called from other threads ------------------------------------------------------------

    def trigger(self, source: str = "pir") -> None:
        """Safe from any thread (gpiozero's callback thread included); never blocks."""
        self.triggers.put(Trigger(source, time.monotonic()))

    def timelapse_now(self) -> None:
        self.triggers.put(Trigger("timelapse", time.monotonic()))

    def wait_idle(self, timeout: float) -> bool:
        """Block until no trigger is queued and no burst is running (simulation, tests)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._idle.wait(max(0.0, deadline - time.monotonic())) and self.triggers.empty():
                time.sleep(0.01)
                if self._idle.is_set() and self.triggers.empty():
                    return True
            else:
                time.sleep(0.01)
        return False

    def stop(self, timeout: float | None = None) -> None:
        """Finish the frame in progress (and close its event), then end."""
        self._stopping.set()
        self.triggers.put(Trigger("stop", time.monotonic()))
        self.join(timeout)

    # -- the loop --------------------------------------------------------------------------------

    def run(self) -> None:
        while not self._stopping.is_set():
            if self.triggers.empty():
                self._idle.set()
            try:
                trig = self.triggers.get(timeout=self._wait_s())
            except queue.Empty:
                trig = None
            self._idle.clear()
            if self._stopping.is_set():
                return
            now = time.monotonic()
            if trig is None:
                if self._next_timelapse is not None and now >= self._next_timelapse:
                    self._timelapse(Trigger("timelapse", now))
                continue
            if trig.source == "timelapse":
                self._timelapse(trig)
                continue
            self.stats.triggers += 1
            # Cooldown damps the PIR; a technician's or the cloud's test capture is never held.
            if trig.source == "pir" and now < self._cooldown_until:
                self.stats.suppressed += 1
                log.info(
                    "trigger during cooldown: counted, no burst",
                    extra={"trigger_source": trig.source},
                )
                continue
            self._burst(trig)

    def _wait_s(self) -> float:
        if self._next_timelapse is None:
            return 1.0
        return max(0.0, min(1.0, self._next_timelapse - time.monotonic()))

    def _timelapse(self, trig: Trigger) -> None:
        interval = self.settings.capture.timelapse_interval_s
        if interval > 0:
            self._next_timelapse = time.monotonic() + interval
        event_id = str(uuid.uuid4())
        self.stats.events += 1
        self._capture_one(event_id, 0, trig, TIMELAPSE, "timelapse")
        self.sink(EventClosed(event_id, local_now(self.settings.device.timezone), 1, TIMELAPSE))

    def _burst(self, trig: Trigger) -> None:
        cfg = self.settings.capture
        event_id = str(uuid.uuid4())
        self.stats.events += 1
        remaining = cfg.burst_frames
        seq = 0
        while True:
            self._capture_one(event_id, seq, trig if seq == 0 else None, ACTIVITY, trig.source)
            seq += 1
            remaining -= 1
            if self._stopping.is_set() or seq >= cfg.max_burst_frames:
                break
            if self._take_retriggers():
                remaining = cfg.burst_frames
            if remaining <= 0:
                break
            self._stopping.wait(cfg.burst_interval_s)
        self.sink(EventClosed(event_id, local_now(self.settings.device.timezone), seq, ACTIVITY))
        self._cooldown_until = time.monotonic() + cfg.cooldown_s

    def _take_retriggers(self) -> bool:
        """Consume waiting PIR triggers (they extend the burst); keep any other kind queued."""
        found = 0
        others: list[Trigger] = []
        while True:
            try:
                t = self.triggers.get_nowait()
            except queue.Empty:
                break
            if t.source in ("timelapse", "stop"):
                others.append(t)
            else:
                found += 1
        for t in others:
            self.triggers.put(t)
        self.stats.triggers += found
        self.stats.retriggers += found
        return found > 0

    def _capture_one(
        self, event_id: str, seq: int, trig: Trigger | None, method: str, source: str
    ) -> None:
        ir_on = self.ir.is_on
        try:
            frame = self.camera.capture()
        except CameraError as exc:
            self.stats.camera_errors += 1
            log.error("camera failed: %s", exc)
            frame = Frame(b"", None, 0, 0, error=f"camera error: {exc}")
        except Exception as exc:  # a driver fault must not end the capture thread
            self.stats.camera_errors += 1
            log.exception("camera raised")
            frame = Frame(b"", None, 0, 0, error=f"camera raised {type(exc).__name__}: {exc}")
        mono = time.monotonic()
        captured_at = local_now(self.settings.device.timezone)
        self.sink(
            CapturedFrame(
                event_id=event_id,
                media_id=str(uuid.uuid4()),
                seq=seq,
                captured_at=captured_at,
                captured_mono=mono,
                trigger_mono=trig.at_mono if trig else None,
                capture_method=method,
                trigger_source=source,
                clock=self.clock.state(),
                ir_on=ir_on,
                frame=frame,
            )
        )
        self.stats.frames += 1
        lores_mean = float(frame.lores.mean()) if frame.lores is not None else None
        self.ir.update(lores_mean, captured_at)
