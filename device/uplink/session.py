"""When the trap may use its link: inside a sync window (``uplink.sync_windows``), or for a
sync someone asked for (``camtrap sync`` on site, the ``sync-now`` remote command).

A sync session asked for outside the windows lasts until the drain has nothing left to send
(the uplink room says so with ``finished``) or ``ON_DEMAND_MAX_S`` passed, whichever comes
first: a technician asking on site gets the radio for that sync, not for the rest of the day.

The schedule is read again on every question, because remote config may change the windows
while the agent runs. Window edges are judged on the wall clock in ``device.timezone``; the
on-demand deadline on the monotonic clock, which a clock correction at connect cannot move.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from device.clock import SYSTEM_CLOCK, MonotonicClock
from device.contracts.windows import Schedule

# As long as ``camtrap sync`` waits by default: past it nobody is watching that sync.
ON_DEMAND_MAX_S = 600.0


class SyncSessions:
    def __init__(
        self,
        schedule: Callable[[], Schedule],
        *,
        clock: MonotonicClock = SYSTEM_CLOCK,
        wall_clock: Callable[[], float],
        on_demand_max_s: float = ON_DEMAND_MAX_S,
    ) -> None:
        self.schedule = schedule
        self.clock = clock
        self.wall_clock = wall_clock
        self.on_demand_max_s = on_demand_max_s
        self._demand_until: float | None = None
        self._demand_why = ""

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.wall_clock(), UTC)

    @property
    def always(self) -> bool:
        """No sync windows: the link may be used at any time (the behaviour before windows)."""
        return self.schedule().always

    def ask(self, why: str) -> None:
        """Someone wants a sync now, window or not."""
        self._demand_until = self.clock.monotonic() + self.on_demand_max_s
        self._demand_why = why

    def finished(self) -> None:
        """The sync asked for has nothing left to send."""
        self._demand_until = None

    @property
    def on_demand(self) -> bool:
        if self._demand_until is None:
            return False
        if self.clock.monotonic() >= self._demand_until:
            self._demand_until = None
            return False
        return True

    def wanted(self) -> tuple[bool, str]:
        """Whether the link may be up now, and why (for the log)."""
        schedule = self.schedule()
        if schedule.always:
            return True, "no sync windows: always"
        if schedule.is_open(self.now()):
            return True, f"inside a sync window ({schedule})"
        if self.on_demand:
            return True, f"{self._demand_why}, outside the sync windows ({schedule})"
        return False, f"outside the sync windows ({schedule})"

    def seconds_until_open(self) -> float | None:
        """How long until a window opens (0: open now); None: never (no windows means open)."""
        schedule = self.schedule()
        if schedule.always:
            return 0.0
        now = self.now()
        opens = schedule.next_open(now)
        return None if opens is None else max(0.0, (opens - now).total_seconds())
