"""When the camera streams: the power profile's policy, asked by the capture loop.

- ``always-ready``: the camera streams from start to stop; a trigger's first frame comes from
  the running stream (the lowest latency, the highest idle power).
- ``low-power``: the camera is stopped between events. A trigger starts it, the event's first
  frame is taken as soon as it runs, and after the event's last frame it stays on for
  ``power.camera_linger_s`` (a retrigger then costs no start) before it stops.
- ``scheduled``: the camera streams inside ``power.capture_windows`` (local time,
  ``device.timezone``) and is stopped outside; outside, PIR edges are counted, not captured,
  and a timelapse frame starts the camera for itself only if
  ``power.timelapse_outside_windows``.

The profile and the windows are read from the settings at every decision, so a remote config
change applies at the loop's next wake. Every start and stop is reported to the agent's
``EnergyCounters``: camera-on seconds are what ``camtrap energy`` charges the camera for.

Only the capture loop's thread calls in; no lock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from device.clock import SYSTEM_CLOCK, MonotonicClock
from device.contracts.windows import Schedule

if TYPE_CHECKING:
    from device.config import PowerProfile, Settings
    from device.hardware.camera import Camera
    from device.power.counters import EnergyCounters

log = logging.getLogger("camtrap.power")


def _utc_now() -> datetime:
    return datetime.now(UTC)


class CameraPower:
    """``running``: whether the owner already started the camera (the agent does, so a trap
    without a camera fails at start-up whatever the profile). ``wall`` gives the aware time
    the windows are judged on (tests pass a fake one)."""

    def __init__(
        self,
        settings: Settings,
        camera: Camera,
        *,
        timer: MonotonicClock = SYSTEM_CLOCK,
        counters: EnergyCounters | None = None,
        wall: Callable[[], datetime] = _utc_now,
        running: bool = True,
    ) -> None:
        self.settings = settings
        self.camera = camera
        self.timer = timer
        self.counters = counters
        self.wall = wall
        self.is_on = running
        self.starts = 0  # stream starts after the first: what the low-power profiles pay for
        self._linger_until: float | None = None
        self._schedule_key: tuple[tuple[str, ...], str] | None = None
        self._schedule = Schedule(())
        if running and counters is not None:
            counters.camera(True)

    # -- what the profile says ----------------------------------------------------------------

    @property
    def profile(self) -> PowerProfile:
        return self.settings.power.profile

    def schedule(self) -> Schedule:
        """The capture windows, parsed again only when remote config changed them."""
        key = (tuple(self.settings.power.capture_windows), self.settings.device.timezone)
        if key != self._schedule_key:
            self._schedule = Schedule.parse(key[0], key[1])
            self._schedule_key = key
        return self._schedule

    def window_open(self) -> bool:
        """Captures are allowed now: always, except outside the windows of ``scheduled``."""
        return self.profile != "scheduled" or self.schedule().is_open(self.wall())

    def streams_between_events(self) -> bool:
        """The camera should run while nothing happens."""
        if self.profile == "always-ready":
            return True
        return self.profile == "scheduled" and self.window_open()

    # -- what the loop does ---------------------------------------------------------------------

    def started(self) -> None:
        """The owner started the camera (``running`` was False): count it as on."""
        if not self.is_on:
            self.is_on = True
            if self.counters is not None:
                self.counters.camera(True)

    def ensure_on(self) -> None:
        """Before a frame: start the camera if it is stopped (CameraError if it cannot)."""
        self._linger_until = None
        if self.is_on:
            return
        # The sensor draws power while it starts: the start counts as camera-on time.
        if self.counters is not None:
            self.counters.camera(True)
        try:
            self.camera.start()
        except BaseException:
            if self.counters is not None:
                self.counters.camera(False)
            raise
        self.is_on = True
        self.starts += 1

    def event_done(self, *, linger: bool) -> None:
        """After an event's last frame. ``linger`` (activity events): stay on for a
        retrigger; a timelapse frame does not linger, but does not cut a linger short."""
        if self.streams_between_events():
            return
        now = self.timer.monotonic()
        if linger:
            self._linger_until = now + self.settings.power.camera_linger_s
        if self._linger_until is None or now >= self._linger_until:
            self._off()

    def settle(self) -> None:
        """At every wake of the loop: follow the profile (a window edge passed, a linger
        ended, remote config changed the profile)."""
        if self.streams_between_events():
            if not self.is_on:
                try:
                    self.ensure_on()
                except Exception as exc:  # retried at the next wake; captures record errors
                    log.error("camera did not start for the capture window: %s", exc)
            self._linger_until = None
            return
        if not self.is_on:
            return
        if self._linger_until is None or self.timer.monotonic() >= self._linger_until:
            self._off()

    def next_change_s(self) -> float | None:
        """Seconds until ``settle`` has something to do (None: nothing scheduled)."""
        waits: list[float] = []
        if self.is_on and self._linger_until is not None:
            waits.append(self._linger_until - self.timer.monotonic())
        if self.profile == "scheduled":
            edge = self.schedule().seconds_until_change(self.wall())
            if edge is not None:
                waits.append(edge)
        return max(0.0, min(waits)) if waits else None

    def finish(self) -> None:
        """The loop ends: the owner closes the camera; the counters stop counting it."""
        if self.is_on and self.counters is not None:
            self.counters.camera(False)
        self.is_on = False
        self._linger_until = None

    def _off(self) -> None:
        self._linger_until = None
        try:
            self.camera.stop()
        except Exception as exc:  # it may still stream: counted as off, tried again next time
            log.error("camera did not stop: %s", exc)
        self.is_on = False
        if self.counters is not None:
            self.counters.camera(False)
