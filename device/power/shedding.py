"""Low-battery shedding: the steps a draining trap takes, and walks back when it recovers.

The level is how many of ``SHED_STEPS`` are in force (0: none; 4: shut down). Each step has
its threshold in ``[battery]``; a step is taken when the charge falls below it (several at once
after a large drop) and walked back once the charge is ``recover_margin_pct`` above it, so a
pack that sags under load and recovers at rest does not flap between steps.

Two rules protect the trap from its gauge:

- no reading (``None``: no gauge, a failed read) keeps the level: never shed on a doubt, and
  never shut down because a wire came loose;
- shutting down needs ``SHUTDOWN_CONFIRM_READINGS`` readings below ``shutdown_pct`` with none
  above it in between (no reading neither counts nor breaks the run): a poweroff leaves the
  trap dead until someone visits, so one glitched 0 V read must not cause it.

Shutdown is final for this run: the agent stops cleanly and runs ``battery.shutdown_command``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from device.clock import SYSTEM_CLOCK, MonotonicClock
from device.power.battery import BatteryGauge, GaugeReadError
from device.power.report import SHED_STEPS, BatteryReading

if TYPE_CHECKING:
    from device.config import BatterySection

log = logging.getLogger("camtrap.power")

SHUTDOWN = len(SHED_STEPS)  # the last level
SHUTDOWN_CONFIRM_READINGS = 2


def thresholds(section: BatterySection) -> tuple[float, ...]:
    """Step N's threshold at index N-1, in SHED_STEPS order (each at most the one before)."""
    return (
        section.stop_blank_media_pct,
        section.stop_classifying_pct,
        section.stop_timelapse_pct,
        section.shutdown_pct,
    )


class ShedLadder:
    """The shedding level, from one reading to the next (no threads, no clock)."""

    def __init__(self, section: BatterySection, level: int = 0) -> None:
        self.thresholds = thresholds(section)
        self.margin = section.recover_margin_pct
        self.level = level
        self._below_shutdown = 0

    def update(self, percent: float | None) -> int:
        if percent is None or self.level == SHUTDOWN:
            return self.level
        below = sum(1 for threshold in self.thresholds if percent < threshold)
        self._below_shutdown = self._below_shutdown + 1 if below == SHUTDOWN else 0
        if below == SHUTDOWN and self._below_shutdown < SHUTDOWN_CONFIRM_READINGS:
            below = SHUTDOWN - 1  # every other step now; the poweroff waits for a second look
        if below > self.level:
            self.level = below
            return self.level
        # Walk back every step the charge has recovered past, margin included.
        while self.level > 0 and percent >= self.thresholds[self.level - 1] + self.margin:
            self.level -= 1
        return self.level

    @property
    def steps(self) -> tuple[str, ...]:
        return SHED_STEPS[: self.level]


class ShedEffects(Protocol):
    """What each step switches; the agent implements it over the uplink policy, the vision
    worker, the capture loop and its own stop. Each call says the state wanted, so applying a
    level twice is harmless."""

    def send_blank_media(self, allowed: bool) -> None: ...

    def classify(self, allowed: bool) -> None: ...

    def timelapse(self, allowed: bool) -> None: ...

    def shut_down(self) -> None: ...


def apply_level(level: int, effects: ShedEffects) -> None:
    """Make ``effects`` match ``level``: steps below it on, the rest off."""
    effects.send_blank_media(level < 1)
    effects.classify(level < 2)
    effects.timelapse(level < 3)
    if level >= SHUTDOWN:
        effects.shut_down()


OnChange = Callable[[int, BatteryReading], None]
OnReading = Callable[[BatteryReading], None]


class BatteryMonitor(threading.Thread):
    """Reads the gauge every ``interval_s`` and keeps the shedding level.

    ``on_reading(reading)`` follows every read (a failed read gives a reading with every
    figure None, so the status never shows a stale charge); ``on_change(level, reading)``
    follows a read that changed the level. Both run on this thread. Between reads it blocks
    on the clock (``device.clock.MonotonicClock``), so a test moves time instead of sleeping.
    """

    def __init__(
        self,
        gauge: BatteryGauge,
        ladder: ShedLadder,
        *,
        interval_s: float,
        on_change: OnChange,
        on_reading: OnReading | None = None,
        clock: MonotonicClock = SYSTEM_CLOCK,
    ) -> None:
        super().__init__(name="battery", daemon=True)
        self.gauge = gauge
        self.ladder = ladder
        self.interval_s = interval_s
        self.on_change = on_change
        self.on_reading = on_reading
        self.clock = clock
        self.reading: BatteryReading | None = None
        self.reads = 0
        self._stopping = threading.Event()
        self._failing: set[str] = set()

    @property
    def level(self) -> int:
        return self.ladder.level

    def poll_once(self) -> BatteryReading:
        """One read, the level updated and the callbacks called."""
        try:
            reading = self.gauge.read()
        except GaugeReadError as exc:
            if exc.kind not in self._failing:
                log.warning("battery gauge: %s; the shedding level stays %d", exc, self.level)
                self._failing.add(exc.kind)
            reading = BatteryReading(None, source=self.gauge.describe())
        else:
            if self._failing:
                log.info("battery gauge: reading again (%s)", self.gauge.describe())
                self._failing.clear()
        self.reading = reading
        before = self.ladder.level
        level = self.ladder.update(reading.percent)
        try:
            if self.on_reading is not None:
                self.on_reading(reading)
            if level != before:
                log.warning(
                    "battery %s%%: shedding level %d -> %d (%s)",
                    reading.percent,
                    before,
                    level,
                    ", ".join(SHED_STEPS[:level]) or "nothing shed",
                )
                self.on_change(level, reading)
        finally:
            self.reads += 1  # last: a reader that saw the count change sees the callbacks done
        return reading

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.poll_once()
            except Exception:  # a bug in a callback must not end battery watching
                log.exception("battery monitor: a reading could not be handled")
            if self.ladder.level == SHUTDOWN:
                return  # final: the agent is stopping
            if self.clock.wait(self._stopping, self.interval_s):
                return

    def stop(self, timeout: float | None = None) -> None:
        """Safe from ``on_change`` too (the shutdown step stops the agent from this thread)."""
        self._stopping.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)
