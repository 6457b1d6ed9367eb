"""The power room of the agent: the battery monitor and its shedding ladder, the wake
scheduler, and the power state the agent leaves in ``power-state.json``.

It is lent only what it uses: the settings, the agent's ``EnergyCounters``, the shedding
effects (``ShedEffects``: the agent switches them over the uplink policy, the vision worker,
the capture loop and its own stop), a way to learn whether the radio is on and whether the
wall clock can be trusted, and ``on_sleep`` for a wake scheduled and armed. Its thread is the
battery monitor's: one read every ``battery.poll_interval_s``, and on the same beat the wake
check and, at most every ``SAVE_EVERY_S``, the state file.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from device.clock import SYSTEM_CLOCK, MonotonicClock
from device.config import Settings
from device.contracts.energy import budget
from device.contracts.windows import Schedule
from device.power.battery import BatteryGauge, NoGauge, open_gauge
from device.power.counters import EnergyCounters
from device.power.cpu import cpu_by_room
from device.power.ledger import EnergyLedger
from device.power.report import BatteryReading, PowerReport
from device.power.shedding import BatteryMonitor, ShedEffects, ShedLadder, apply_level
from device.power.wake import SleepPlan, WakeError, WakeScheduler

log = logging.getLogger("camtrap.power")

# The state file is rewritten on this beat (and at every level change and at stop): often
# enough for `camtrap status` and `camtrap energy`, rare enough to spare the card.
SAVE_EVERY_S = 600.0


def wake_schedules(settings: Settings) -> list[Schedule]:
    """The windows the trap must be up for: its capture windows (only the scheduled profile
    has any) and its sync windows. Either one always open keeps the trap awake."""
    zone = settings.device.timezone
    capture = settings.power.capture_windows if settings.power.profile == "scheduled" else []
    return [Schedule.parse(capture, zone), Schedule.parse(settings.uplink.sync_windows, zone)]


class PowerRoom:
    def __init__(
        self,
        settings: Settings,
        counters: EnergyCounters,
        *,
        effects: ShedEffects,
        radio_on: Callable[[], bool],
        clock_synced: Callable[[], bool],
        on_sleep: Callable[[SleepPlan], None],
        gauge: BatteryGauge | None = None,
        clock: MonotonicClock = SYSTEM_CLOCK,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        wake: WakeScheduler | None = None,
    ) -> None:
        self.settings = settings
        self.counters = counters
        self.effects = effects
        self.radio_on = radio_on
        self.clock_synced = clock_synced
        self.on_sleep = on_sleep
        self.clock = clock
        self.now = now
        # A gauge that is not there fails here, at agent start, naming the bus or the path.
        self.gauge = gauge if gauge is not None else open_gauge(settings.battery)
        self.ladder = ShedLadder(settings.battery)
        # Made at start, once the store has opened the data dir (a card mounted late).
        self.ledger: EnergyLedger | None = None
        self.wake = (
            wake if wake is not None else WakeScheduler(settings.wake, wake_schedules(settings))
        )
        self.monitor = BatteryMonitor(
            self.gauge,
            self.ladder,
            interval_s=settings.battery.poll_interval_s,
            on_change=self._level_changed,
            on_reading=self._beat,
            clock=clock,
        )
        self.monitor.name = "power"
        self.sleep_plan: SleepPlan | None = None
        self._saved_at: float | None = None
        self._lock = threading.Lock()

    @property
    def level(self) -> int:
        return self.ladder.level

    # -- the agent calls -------------------------------------------------------------------------

    def start(self) -> None:
        self.ledger = EnergyLedger(self.settings.storage.data_dir, self.counters)
        try:
            self.wake.clear()  # an alarm armed before the last halt has done its job
        except WakeError as exc:
            log.warning("wake alarm: %s", exc)
        self.monitor.start()

    def stop(self) -> None:
        if self.monitor.is_alive():
            self.monitor.stop(timeout=5.0)
        self.save()

    def report(self) -> PowerReport:
        """The power figures now: the heartbeat's and the state file's."""
        reading = self.monitor.reading
        if isinstance(self.gauge, NoGauge):
            reading = None
        cpu = cpu_by_room()
        totals = self.ledger.total(cpu) if self.ledger else self.counters.snapshot(cpu)
        power = self.settings.power
        days_left: float | None = None
        try:
            estimate = budget(
                totals, power.board, power.battery_wh, reading.percent if reading else None
            )
            days_left = estimate.days_left if reading is not None else estimate.days_full
        except ValueError as exc:  # an unknown board: the figures go without an estimate
            log.debug("no energy estimate: %s", exc)
        return PowerReport(
            profile=power.profile,
            board=power.board,
            counters=totals,
            battery=reading,
            shed_level=self.ladder.level,
            radio_on=self.radio_on(),
            days_left=days_left,
        )

    def save(self) -> None:
        """Write ``power-state.json``; a card that refuses is logged, never fatal."""
        if self.ledger is None:
            return  # never started: nothing of this data dir was read, nothing to write
        with self._lock:
            try:
                self.ledger.save(self.report())
            except OSError as exc:
                log.warning("power state not saved in %s: %s", self.settings.storage.data_dir, exc)
            self._saved_at = self.clock.monotonic()

    # -- the monitor thread ----------------------------------------------------------------------

    def _level_changed(self, level: int, reading: BatteryReading) -> None:
        # The monitor has logged the change; the steps follow, then the state file says so.
        apply_level(level, self.effects)
        self.save()

    def _beat(self, reading: BatteryReading) -> None:
        due = self._saved_at is None or self.clock.monotonic() - self._saved_at >= SAVE_EVERY_S
        if due:
            self.save()
        self._consider_sleep()

    def _consider_sleep(self) -> None:
        if self.sleep_plan is not None or self.settings.wake.mode == "none":
            return
        if not self.clock_synced():
            # Windows are times of day: a clock that may be wrong could sleep through one.
            return
        try:
            plan = self.wake.prepare(self.now())
        except WakeError as exc:
            log.error("not sleeping: %s", exc)
            return
        if plan is not None:
            self.sleep_plan = plan
            log.warning(
                "no window until %s: waking at %s, halting now",
                plan.opens_at.isoformat(),
                plan.wake_at.isoformat(),
            )
            self.save()
            self.on_sleep(plan)
