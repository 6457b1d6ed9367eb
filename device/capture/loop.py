"""The capture loop: triggers become bursts; a schedule becomes timelapse frames.

- A PIR rising edge starts a burst of ``burst_frames`` frames, ``burst_interval_s`` apart.
- A retrigger during a burst extends it (the remaining count starts over), up to
  ``max_burst_frames`` frames in all.
- After a burst, ``cooldown_s`` passes before a new burst may start; triggers that arrive in
  the cooldown are counted, not silently lost.
- Timelapse frames (health checks) are single-frame events with captureMethod ``timeLapse``.
- The power profile (``device.power.camera_power``) decides when the camera streams; the loop
  asks it before every frame and at every wake.

Between events the loop blocks until the next thing it must do: a trigger, a timelapse
frame, a lores analysis for the IR light, a power change (a linger ending, a capture window
edge), or at the latest ``MAX_IDLE_WAIT_S``.

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
from typing import TYPE_CHECKING, Protocol

from device.capture.types import ACTIVITY, TIMELAPSE, CapturedFrame, EventClosed
from device.clock import SYSTEM_CLOCK, ClockProbe, MonotonicClock, local_now
from device.config import Settings
from device.contracts.protocol import CaptureMethod, TriggerSource
from device.hardware.camera import Camera, CameraError, Frame
from device.power.camera_power import CameraPower

if TYPE_CHECKING:
    from device.power.counters import EnergyCounters

log = logging.getLogger("camtrap.capture")

# The longest the loop blocks with nothing due. It bounds two things no event tells the loop
# about: a remote config change nobody signalled (``config_changed`` makes it immediate), and
# a step of the wall clock (NTP after a cold boot) that moves a capture window's edge, which
# the loop otherwise waits for on the monotonic clock. One wake a minute costs nothing
# measurable (docs/power.md).
MAX_IDLE_WAIT_S = 60.0


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
    outside_window: int = 0  # PIR edges outside the capture windows (scheduled): not captured
    timelapse_skipped: int = 0  # timelapse frames not taken: suspended, or outside the windows
    analyses: int = 0  # lores frames analysed between events for the IR light


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
    triggers and frames; ``clock`` only says whether the wall clock can be trusted.

    ``power`` decides when the camera streams (made from the settings when not given, for a
    camera its owner already started); ``counters`` (the agent's ``EnergyCounters``) counts
    every frame handed to the sink as a capture.
    """

    def __init__(
        self,
        settings: Settings,
        camera: Camera,
        sink: Callable[[CapturedFrame | EventClosed], None],
        clock: ClockProbe,
        ir: IrControl | None = None,
        *,
        timer: MonotonicClock = SYSTEM_CLOCK,
        power: CameraPower | None = None,
        counters: EnergyCounters | None = None,
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
        self.power = power or CameraPower(settings, camera, timer=timer, counters=counters)
        self.counters = counters
        self._timelapse_suspended = False
        interval = settings.capture.timelapse_interval_s
        self._interval_seen = interval
        self._next_timelapse = timer.monotonic() + interval if interval > 0 else None
        self._last_lores = timer.monotonic()  # the last analysis plane the IR light saw

    # -- called from other threads ------------------------------------------------------------

    def trigger(self, source: TriggerSource = "pir") -> None:
        """Safe from any thread (gpiozero's callback thread included); never blocks."""
        self._enqueue(Trigger(source, self.timer.monotonic()))

    def timelapse_now(self) -> None:
        self._enqueue(Trigger("timelapse", self.timer.monotonic()))

    def suspend_timelapse(self, suspended: bool) -> None:
        """Battery shedding: no timelapse frames while suspended (they are skipped and
        counted, and the schedule goes on, so they resume on it)."""
        self._timelapse_suspended = suspended
        self._wake.set()

    @property
    def timelapse_suspended(self) -> bool:
        return self._timelapse_suspended

    def config_changed(self) -> None:
        """Remote config changed: look at it now rather than at the next ceiling wake."""
        self._wake.set()

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
        try:
            self.power.settle()  # low-power: the camera the agent started stops at once
            while not self._stopping.is_set():
                trig = self._next_trigger()
                if self._stopping.is_set():
                    return
                if trig is None:
                    self._idle_work()
                    continue
                try:
                    self._handle(trig)
                finally:
                    self._finished(1)
        finally:
            self.power.finish()

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
        """Until the earliest thing due: timelapse, analysis, a power change, the ceiling."""
        now = self.timer.monotonic()
        waits = [MAX_IDLE_WAIT_S]
        if self._next_timelapse is not None:
            waits.append(self._next_timelapse - now)
        analysis = self._next_analysis()
        if analysis is not None:
            waits.append(analysis - now)
        power = self.power.next_change_s()
        if power is not None:
            waits.append(power)
        return max(0.0, min(waits))

    def _idle_work(self) -> None:
        """A wake with no trigger: whatever is due now, then the camera as the profile says."""
        self._follow_timelapse_interval()
        now = self.timer.monotonic()
        if self._next_timelapse is not None and now >= self._next_timelapse:
            with self._work:
                self._unfinished += 1
            try:
                self._timelapse(Trigger("timelapse", now))
            finally:
                self._finished(1)
        analysis = self._next_analysis()
        if analysis is not None and self.timer.monotonic() >= analysis:
            self._analyse()
        self.power.settle()

    def _follow_timelapse_interval(self) -> None:
        """A remote change of timelapse_interval_s: the schedule starts over from now."""
        interval = self.settings.capture.timelapse_interval_s
        if interval == self._interval_seen:
            return
        self._interval_seen = interval
        self._next_timelapse = self.timer.monotonic() + interval if interval > 0 else None

    def _next_analysis(self) -> float | None:
        """When the IR light next needs a lores frame between events: only for an auto IR
        light, while the camera streams anyway (lores analysis is never worth a start)."""
        interval = self.settings.power.analysis_interval_s
        ir = self.settings.ir
        if interval <= 0 or ir.pin is None or ir.mode != "auto":
            return None
        if not self.power.streams_between_events():
            return None
        return self._last_lores + interval

    def _analyse(self) -> None:
        self._last_lores = self.timer.monotonic()
        try:
            self.power.ensure_on()
            lores = self.camera.capture_lores()
        except Exception as exc:  # a light decision is not worth ending the thread for
            log.warning("lores analysis failed: %s", exc)
            return
        self.stats.analyses += 1
        lores_mean = float(lores.mean()) if lores is not None else None
        self.ir.update(lores_mean, local_now(self.settings.device.timezone))

    def _handle(self, trig: Trigger) -> None:
        if trig.source == "timelapse":
            self._timelapse(trig)
            return
        self.stats.triggers += 1
        # Outside the capture windows a PIR edge is only counted; a technician's or the
        # cloud's test capture is a deliberate ask and is taken.
        if trig.source == "pir" and not self.power.window_open():
            self.stats.outside_window += 1
            log.info("trigger outside the capture windows: counted, no burst")
            return
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
        self._interval_seen = interval
        self._next_timelapse = self.timer.monotonic() + interval if interval > 0 else None
        if self._timelapse_suspended:
            self.stats.timelapse_skipped += 1
            log.info("timelapse frame skipped: suspended (battery)")
            return
        if not self.power.window_open() and not self.settings.power.timelapse_outside_windows:
            self.stats.timelapse_skipped += 1
            return
        event_id = str(uuid.uuid4())
        self.stats.events += 1
        self._capture_one(event_id, 0, trig, TIMELAPSE, "timelapse")
        self.sink(EventClosed(event_id, local_now(self.settings.device.timezone), 1, TIMELAPSE))
        self.power.event_done(linger=False)

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
        self.power.event_done(linger=True)

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
            # Low-power profiles: the stream starts here, inside the trigger's latency (the
            # trigger was stamped when it came; the frame is stamped when it is taken).
            self.power.ensure_on()
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
        if self.counters is not None:
            self.counters.add_captures(1)
        if frame.lores is not None:
            self._last_lores = mono
        lores_mean = float(frame.lores.mean()) if frame.lores is not None else None
        self.ir.update(lores_mean, captured_at)
