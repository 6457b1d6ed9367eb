"""Wake schedules: sleeping the whole trap between its windows (``[wake]``).

A trap whose capture windows and sync windows are all closed, and stay closed for a while, has
nothing to do until the first of them opens. Halting the Pi then saves most of its energy:

- ``rtc``: a Pi 5 with ``POWER_OFF_ON_HALT=1`` in its EEPROM config draws a few mA halted and
  powers up when its RTC alarm fires. ``RtcWakeAlarm`` sets ``/sys/class/rtc/rtc0/wakealarm``;
- ``controller``: an external power controller (a microcontroller or a timer relay board)
  cuts and restores the Pi's power from a schedule file. ``ControllerSchedule`` writes it.

``plan_sleep`` decides from the schedules alone; ``WakeScheduler`` arms the target and says
whether to halt. Halting itself (``wake.halt_command``) is the agent's: it stops cleanly first.
A wake that could not be armed is never followed by a halt, since nothing would wake the trap.
"""

from __future__ import annotations

import errno
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from device.contracts.durable import atomic_write
from device.contracts.windows import Schedule

if TYPE_CHECKING:
    from device.config import WakeSection

SCHEDULE_FORMAT = 1
# The controller cuts the power this long after the agent decides to sleep: time for a clean
# stop and a halt (the unit's TimeoutStopSec is 30 s) before the power goes.
HALT_GRACE_S = 60.0


class WakeError(Exception):
    """The wake could not be armed; the message names the file. The trap stays up."""


@dataclass(frozen=True)
class SleepPlan:
    sleep_at: datetime  # now: when the trap may go down
    wake_at: datetime  # lead_s before the first window opens
    opens_at: datetime  # when that window opens

    @property
    def seconds(self) -> float:
        return (self.wake_at - self.sleep_at).total_seconds()


def plan_sleep(
    now: datetime, schedules: Sequence[Schedule], min_sleep_s: float, lead_s: float
) -> SleepPlan | None:
    """A sleep from ``now`` to ``lead_s`` before the first window of any schedule opens, or
    None: a window is open, there is nothing to wake for, or the sleep would be shorter than
    ``min_sleep_s`` (a halt and a boot cost more than a short sleep saves)."""
    if not schedules or any(schedule.is_open(now) for schedule in schedules):
        return None
    opens = [at for at in (schedule.next_open(now) for schedule in schedules) if at is not None]
    if not opens:
        return None
    opens_at = min(opens)
    wake_at = opens_at - timedelta(seconds=lead_s)
    if (wake_at - now).total_seconds() < min_sleep_s:
        return None
    return SleepPlan(sleep_at=now, wake_at=wake_at, opens_at=opens_at)


class WakeTarget(Protocol):
    def arm(self, plan: SleepPlan) -> None:
        """Make the hardware wake the trap at ``plan.wake_at``; WakeError if it cannot."""
        ...

    def clear(self) -> None:
        """Forget any armed wake (the trap is up and staying up)."""
        ...


class RtcWakeAlarm:
    """``/sys/class/rtc/rtcN/wakealarm``: seconds since the epoch (the RTC keeps UTC). The
    kernel refuses a new alarm while one is set (EBUSY), so the old one is cleared first by
    writing 0; reading gives the armed time, or nothing when none is."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _write(self, text: str) -> None:
        try:
            self.path.write_text(text + "\n")
        except FileNotFoundError as exc:
            raise WakeError(
                f"{self.path}: no such file (is there an RTC? wake.rtc_wakealarm)"
            ) from exc
        except OSError as exc:
            why = "not writable" if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) else ""
            raise WakeError(f"{self.path}: cannot write {text!r} ({why or exc})") from exc

    def read(self) -> int | None:
        """The armed alarm in epoch seconds; None when none is set."""
        try:
            text = self.path.read_text().strip()
        except OSError as exc:
            raise WakeError(f"{self.path}: cannot read ({exc})") from exc
        if not text:
            return None
        try:
            return int(text)
        except ValueError as exc:
            raise WakeError(f"{self.path}: {text[:40]!r} is not epoch seconds") from exc

    def clear(self) -> None:
        self._write("0")

    def arm(self, plan: SleepPlan) -> None:
        at = int(plan.wake_at.timestamp())
        self.clear()
        self._write(str(at))
        armed = self.read()
        if armed != at:
            raise WakeError(f"{self.path}: wrote {at} but it reads back {armed}")


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat(timespec="seconds")


def _epoch(at: datetime | None) -> int | None:
    return None if at is None else int(at.timestamp())


class ControllerSchedule:
    """The schedule file an external power controller reads (docs/power-battery.md has the
    format). Written whole or not at all (tmp, fsync, rename), so the controller never reads
    half a schedule."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _write(self, off_at: datetime | None, on_at: datetime | None, now: datetime) -> None:
        body = {
            "format": SCHEDULE_FORMAT,
            "written_at": _iso(now),
            "off_at": _iso(off_at),
            "on_at": _iso(on_at),
            "off_epoch": _epoch(off_at),
            "on_epoch": _epoch(on_at),
        }
        data = (json.dumps(body, indent=1) + "\n").encode()
        try:
            atomic_write(self.path, data, mode=0o644)
        except FileNotFoundError as exc:
            raise WakeError(
                f"{self.path}: its directory does not exist (wake.controller_file)"
            ) from exc
        except OSError as exc:
            raise WakeError(f"{self.path}: cannot write ({exc.strerror or exc})") from exc

    def arm(self, plan: SleepPlan) -> None:
        self._write(plan.sleep_at + timedelta(seconds=HALT_GRACE_S), plan.wake_at, plan.sleep_at)

    def clear(self) -> None:
        self._write(None, None, datetime.now(UTC))

    def read(self) -> dict[str, object] | None:
        try:
            body: dict[str, object] = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise WakeError(f"{self.path}: unreadable ({exc})") from exc
        return body


def wake_target(section: WakeSection) -> WakeTarget | None:
    if section.mode == "rtc":
        return RtcWakeAlarm(section.rtc_wakealarm)
    if section.mode == "controller":
        return ControllerSchedule(section.controller_file)
    return None


class WakeScheduler:
    """Asked at a moment, decides whether the trap sleeps and arms its wake if so.

    ``schedules``: the capture windows (``power.capture_windows`` under the ``scheduled``
    profile) and the sync windows; an always-open schedule (no windows) never lets it sleep.
    """

    def __init__(
        self,
        section: WakeSection,
        schedules: Sequence[Schedule],
        *,
        target: WakeTarget | None = None,
    ) -> None:
        self.section = section
        self.schedules = tuple(schedules)
        self.target = target if target is not None else wake_target(section)

    def plan(self, now: datetime) -> SleepPlan | None:
        if self.target is None:
            return None
        return plan_sleep(now, self.schedules, self.section.min_sleep_s, self.section.lead_s)

    def prepare(self, now: datetime) -> SleepPlan | None:
        """None: stay up. A plan: its wake is armed, and the agent should stop and halt now.
        WakeError (the target could not be armed) means stay up too; the message says why."""
        plan = self.plan(now)
        if plan is None or self.target is None:
            return None
        self.target.arm(plan)
        return plan

    def clear(self) -> None:
        """At start: a wake armed before the last halt has done its job."""
        if self.target is not None:
            self.target.clear()
