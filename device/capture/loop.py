"""The capture loop: triggers become bursts; a schedule becomes timelapse frames.

- A PIR rising edge starts a burst of ``burst_frames`` frames, ``burst_interval_s`` apart.
- A retrigger during a burst extends it (the remaining count starts over), up to
  ``max_burst_frames`` frames in all.
- After a burst, ``cooldown_s`` passes before a new burst may start; triggers that arrive in
  the cooldown are counted, not silently lost.
- Timelapse frames (health checks) are single-frame events with captureMethod ``timeLapse``.

The loop runs on its own thread. The PIR callback only enqueues; the loop only captures and
hands frames to the store's queue. Every interval is kept on an injected ``MonotonicClock``
(``device.clock``), so tests drive a fake one instead of sleeping.
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from device.capture.types import ACTIVITY, TIMELAPSE, CapturedFrame, EventClosed
from device.clock import SYSTEM_CLOCK, ClockProbe, MonotonicClock, local_now
from device.config import Settings
from device.contracts.protocol import CaptureMethod, TriggerSource
from device.hardware.camera import Camera, CameraError, Frame

log = logging.getLogger("camtrap.capture")

# The longest the loop sleeps between looks at the timelapse schedule.
IDLE_WAIT_S = 1.0


@dataclass(frozen=True)
class Trigger:
    source: TriggerSource
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
    """``timer`` keeps every interval (burst spacing, cooldown, timelapse schedule) and stamps
    triggers and frames; ``clock`` only says whether the wall clock can be trusted."""

    def __init__(
        self,
        settings: Settings,
        camera: Camera,
        sink: Callable[[CapturedFrame | EventClosed], None],
        clock: ClockProbe,
        ir: IrControl | None = None,
        *,
        timer: MonotonicClock = SYSTEM_CLOCK,
    ) -> None:
        super().__init__(name="capture", daemon=True)
        self.settings = settings
        self.camera = camera
        self.sink = sink
        self.clock = clock
        self.timer = timer
        self.ir: IrControl = ir or NoIr()
        self.triggers: queue.Queue[Trigger] = queue.Queue()
        self.stats = CaptureStats()
        self._stopping = threading.Event()
        self._wake = threading.Event()  # set with every queued trigger, and by stop()
        # Triggers queued or being handled, plus a scheduled frame being taken: idle at zero.
        # A count, not a flag, so a trigger cannot slip between "queue empty" and "not busy".
        self._unfinished = 0
        self._work = threading.Condition()
        self._cooldown_until = 0.0
        interval = settings.capture.timelapse_interval_s
        self._next_timelapse = timer.monotonic() + interval if interval > 0 else None

    # -- called from other threads ------------------------------------------------------------

    def trigger(self, source: TriggerSource = "pir") -> None:
        """Safe from any thread (gpiozero's callback thread included); never blocks."""
        self._enqueue(Trigger(source, self.timer.monotonic()))

    def timelapse_now(self) -> None:
        self._enqueue(Trigger("timelapse", self.timer.monotonic()))

    def is_idle(self) -> bool:
        """No trigger is queued or being handled, and no scheduled frame is being taken."""
        with self._work:
            return self._unfinished == 0

    def wait_idle(self, timeout: float) -> bool:
        """Block until ``is_idle`` (simulation, tests). ``timeout`` is the caller's patience in
        real seconds, not a capture interval, so it is not measured on ``timer``."""
        with self._work:
            return self._work.wait_for(lambda: self._unfinished == 0, timeout)

    def stop(self, timeout: float | None = None) -> None:
        """Finish the frame in progress (and close its event), then end."""
        self._stopping.set()
        self._wake.set()
        self.join(timeout)

    # -- the loop --------------------------------------------------------------------------------

    def run(self) -> None:
        while not self._stopping.is_set():
            trig = self._next_trigger()
            if self._stopping.is_set():
                return
            if trig is None:
                self._scheduled_timelapse()
                continue
            try:
                self._handle(trig)
            finally:
                self._finished(1)

    def _enqueue(self, trig: Trigger) -> None:
        with self._work:
            self._unfinished += 1
        self.triggers.put(trig)
        self._wake.set()

    def _finished(self, count: int) -> None:
        with self._work:
            self._unfinished -= count
            self._work.notify_all()

    def _next_trigger(self) -> Trigger | None:
        """A queued trigger, else one that arrives before the next scheduled frame is due."""
        # Cleared before the queue is looked at: a trigger queued after the look sets it again.
        self._wake.clear()
        try:
            return self.triggers.get_nowait()
        except queue.Empty:
            pass
        self.timer.wait(self._wake, self._wait_s())
        try:
            return self.triggers.get_nowait()
        except queue.Empty:
            return None

    def _wait_s(self) -> float:
        if self._next_timelapse is None:
            return IDLE_WAIT_S
        return max(0.0, min(IDLE_WAIT_S, self._next_timelapse - self.timer.monotonic()))

    def _scheduled_timelapse(self) -> None:
        now = self.timer.monotonic()
        if self._next_timelapse is None or now < self._next_timelapse:
            return
        with self._work:
            self._unfinished += 1
        try:
            self._timelapse(Trigger("timelapse", now))
        finally:
            self._finished(1)

    def _handle(self, trig: Trigger) -> None:
        if trig.source == "timelapse":
            self._timelapse(trig)
            return
        self.stats.triggers += 1
        # Cooldown damps the PIR; a technician's or the cloud's test capture is never held.
        if trig.source == "pir" and self.timer.monotonic() < self._cooldown_until:
            self.stats.suppressed += 1
            log.info(
                "trigger during cooldown: counted, no burst",
                extra={"trigger_source": trig.source},
            )
            return
        self._burst(trig)

    def _timelapse(self, trig: Trigger) -> None:
        interval = self.settings.capture.timelapse_interval_s
        # Remote config may set 0 ("off"): then no frame is due until it is set again.
        self._next_timelapse = self.timer.monotonic() + interval if interval > 0 else None
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
            if self.timer.wait(self._stopping, cfg.burst_interval_s):
                break  # stopping: the event closes with the frames it has
        self.sink(EventClosed(event_id, local_now(self.settings.device.timezone), seq, ACTIVITY))
        self._cooldown_until = self.timer.monotonic() + cfg.cooldown_s

    def _take_retriggers(self) -> bool:
        """Consume waiting PIR triggers (they extend the burst); keep timelapse ones queued."""
        found = 0
        others: list[Trigger] = []
        while True:
            try:
                t = self.triggers.get_nowait()
            except queue.Empty:
                break
            if t.source == "timelapse":
                others.append(t)
            else:
                found += 1
        for t in others:
            self.triggers.put(t)  # still counted as unfinished: the loop takes it after the burst
        self.stats.triggers += found
        self.stats.retriggers += found
        if found:
            self._finished(found)
        return found > 0

    def _capture_one(
        self,
        event_id: str,
        seq: int,
        trig: Trigger | None,
        method: CaptureMethod,
        source: TriggerSource,
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
        mono = self.timer.monotonic()
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
