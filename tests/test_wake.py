"""Wake schedules: the trap sleeps only when every window is closed for long enough, and wakes
``lead_s`` before the first one opens; the RTC alarm and the controller's schedule file are
written the way their readers want, against fake trees in tmp_path.

The fake RTC behaves like the kernel's wakealarm attribute: it refuses a new alarm while one
is set (EBUSY) and refuses a time already past (EINVAL); writing 0 clears it.
"""

from __future__ import annotations

import errno
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from device.config import WakeSection
from device.contracts.windows import Schedule
from device.power.wake import (
    HALT_GRACE_S,
    ControllerSchedule,
    RtcWakeAlarm,
    SleepPlan,
    WakeError,
    WakeScheduler,
    plan_sleep,
)

ZONE = "Africa/Nairobi"  # UTC+3, no DST
NIGHT = Schedule.parse(["18:00-06:00"], ZONE)  # capture windows: dusk to dawn
SYNC = Schedule.parse(["12:00-12:30"], ZONE)


def at(hhmm: str, day: int = 2) -> datetime:
    hours, minutes = (int(x) for x in hhmm.split(":"))
    return datetime(2026, 5, day, hours, minutes, tzinfo=UTC) - timedelta(hours=3)


# -- the plan --------------------------------------------------------------------------------


def test_no_sleep_while_a_window_is_open():
    assert plan_sleep(at("23:00"), [NIGHT, SYNC], 1800, 120) is None
    assert plan_sleep(at("12:10"), [NIGHT, SYNC], 1800, 120) is None


def test_it_sleeps_until_lead_s_before_the_first_window_opens():
    plan = plan_sleep(at("07:00"), [NIGHT, SYNC], 1800, 120)
    assert plan == SleepPlan(sleep_at=at("07:00"), wake_at=at("11:58"), opens_at=at("12:00"))
    after_sync = plan_sleep(at("12:30"), [NIGHT, SYNC], 1800, 120)
    assert after_sync is not None and after_sync.wake_at == at("17:58")
    assert after_sync.seconds == pytest.approx(5 * 3600 + 28 * 60)


def test_no_sleep_when_the_next_window_is_too_close():
    # 12:00 opens in 40 minutes; waking 2 minutes early leaves a 38-minute sleep.
    assert plan_sleep(at("11:20"), [NIGHT, SYNC], 1800, 120) is not None
    assert plan_sleep(at("11:40"), [NIGHT, SYNC], 1800, 120) is None, "18 minutes: stay up"


def test_an_always_open_schedule_never_sleeps_and_nothing_to_wake_for_neither():
    assert plan_sleep(at("07:00"), [NIGHT, Schedule.parse([])], 1800, 120) is None
    assert plan_sleep(at("07:00"), [], 1800, 120) is None


def test_windows_follow_the_trap_zone_not_utc():
    # 06:00 local is 03:00 UTC: at 03:30 UTC the night window is over.
    now = datetime(2026, 5, 2, 3, 30, tzinfo=UTC)
    plan = plan_sleep(now, [NIGHT], 1800, 0)
    assert plan is not None and plan.wake_at == datetime(2026, 5, 2, 15, 0, tzinfo=UTC)


# -- the RTC alarm ---------------------------------------------------------------------------


class FakeRtc:
    """/sys/class/rtc/rtc0 with a wakealarm file, and the kernel's rules applied by
    ``kernel_step`` to each write the code made."""

    def __init__(self, root: Path, now: datetime) -> None:
        self.dir = root / "sys/class/rtc/rtc0"
        self.dir.mkdir(parents=True)
        self.path = self.dir / "wakealarm"
        self.path.write_text("")
        self.now = now
        self.armed: int | None = None


class KernelAlarm(RtcWakeAlarm):
    """The real class on the fake file, with the kernel's refusals in front of each write."""

    def __init__(self, rtc: FakeRtc) -> None:
        super().__init__(rtc.path)
        self.rtc = rtc

    def _write(self, text: str) -> None:
        value = int(text)
        if value and self.rtc.armed is not None:
            raise WakeError(f"{self.path}: cannot write {text!r} ([Errno {errno.EBUSY}])")
        if value and value <= self.rtc.now.timestamp():
            raise WakeError(f"{self.path}: cannot write {text!r} ([Errno {errno.EINVAL}])")
        super()._write(text)
        self.rtc.armed = value or None
        if not value:
            self.path.write_text("")  # the kernel shows an empty attribute once cleared


def test_arming_the_rtc_clears_the_old_alarm_then_writes_epoch_seconds(tmp_path):
    rtc = FakeRtc(tmp_path, at("07:00"))
    rtc.armed = int(at("05:00", day=1).timestamp())  # yesterday's alarm, still set
    alarm = KernelAlarm(rtc)
    plan = SleepPlan(at("07:00"), at("11:58"), at("12:00"))
    alarm.arm(plan)
    assert alarm.read() == int(at("11:58").timestamp()) == rtc.armed
    assert rtc.path.read_text() == f"{int(at('11:58').timestamp())}\n"
    alarm.clear()
    assert alarm.read() is None


def test_a_wakealarm_that_is_not_there_or_not_writable_is_one_line(tmp_path):
    missing = RtcWakeAlarm(tmp_path / "sys/class/rtc/rtc0/wakealarm")
    plan = SleepPlan(at("07:00"), at("11:58"), at("12:00"))
    with pytest.raises(WakeError, match=r"no such file.*wake\.rtc_wakealarm"):
        missing.arm(plan)
    read_only = tmp_path / "ro"
    read_only.mkdir()
    (read_only / "wakealarm").mkdir()  # as root a chmod does not stop a write; a dir does
    with pytest.raises(WakeError, match="cannot write '0'") as caught:
        RtcWakeAlarm(read_only / "wakealarm").arm(plan)
    assert "\n" not in str(caught.value)


def test_an_alarm_that_does_not_read_back_is_an_error(tmp_path):
    rtc = FakeRtc(tmp_path, at("07:00"))

    class Deaf(RtcWakeAlarm):
        def _write(self, text: str) -> None:
            pass  # a driver that accepts and ignores

    with pytest.raises(WakeError, match="reads back None"):
        Deaf(rtc.path).arm(SleepPlan(at("07:00"), at("11:58"), at("12:00")))


def test_garbage_in_wakealarm_is_named(tmp_path):
    rtc = FakeRtc(tmp_path, at("07:00"))
    rtc.path.write_text("soon\n")
    with pytest.raises(WakeError, match="'soon' is not epoch seconds"):
        RtcWakeAlarm(rtc.path).read()


# -- the controller's schedule file ----------------------------------------------------------


def test_the_controller_file_holds_the_off_and_on_times(tmp_path):
    path = tmp_path / "wake-schedule.json"
    schedule = ControllerSchedule(path)
    schedule.arm(SleepPlan(at("07:00"), at("11:58"), at("12:00")))
    body = json.loads(path.read_text())
    off = at("07:00") + timedelta(seconds=HALT_GRACE_S)
    assert body["format"] == 1
    assert datetime.fromisoformat(body["written_at"]) == at("07:00")
    assert datetime.fromisoformat(body["off_at"]) == off
    assert datetime.fromisoformat(body["on_at"]) == at("11:58")
    assert (body["off_epoch"], body["on_epoch"]) == (off.timestamp(), at("11:58").timestamp())
    assert not list(tmp_path.glob("*.part")), "written whole: tmp, fsync, rename"
    schedule.clear()
    cleared = schedule.read()
    assert cleared is not None and (cleared["off_at"], cleared["on_at"]) == (None, None)


def test_a_controller_file_in_a_missing_directory_is_named(tmp_path):
    path = tmp_path / "absent" / "wake-schedule.json"
    with pytest.raises(WakeError, match="its directory does not exist"):
        ControllerSchedule(path).arm(SleepPlan(at("07:00"), at("11:58"), at("12:00")))


def test_a_failed_write_leaves_the_old_schedule(tmp_path, monkeypatch):
    path = tmp_path / "wake-schedule.json"
    schedule = ControllerSchedule(path)
    schedule.arm(SleepPlan(at("07:00"), at("11:58"), at("12:00")))
    before = path.read_bytes()

    def full_disk(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(WakeError, match="No space left"):
        schedule.arm(SleepPlan(at("12:30"), at("17:58"), at("18:00")))
    monkeypatch.undo()
    assert path.read_bytes() == before


# -- the scheduler -------------------------------------------------------------------------


def test_the_scheduler_arms_the_rtc_and_says_halt_only_when_it_may_sleep(tmp_path):
    rtc = FakeRtc(tmp_path, at("07:00"))
    section = WakeSection(mode="rtc", rtc_wakealarm=rtc.path, min_sleep_s=1800, lead_s=120)
    scheduler = WakeScheduler(section, [NIGHT, SYNC], target=KernelAlarm(rtc))
    assert scheduler.prepare(at("23:00")) is None, "a window is open"
    assert rtc.armed is None
    plan = scheduler.prepare(at("07:00"))
    assert plan is not None and plan.wake_at == at("11:58")
    assert rtc.armed == int(at("11:58").timestamp())
    scheduler.clear()
    assert rtc.armed is None


def test_the_scheduler_writes_the_controller_file_in_controller_mode(tmp_path):
    path = tmp_path / "wake-schedule.json"
    section = WakeSection(mode="controller", controller_file=path)
    plan = WakeScheduler(section, [NIGHT]).prepare(at("07:00"))
    assert plan is not None
    on_at = json.loads(path.read_text())["on_at"]
    assert datetime.fromisoformat(on_at) == at("17:58")


def test_mode_none_never_sleeps():
    assert WakeScheduler(WakeSection(), [NIGHT]).prepare(at("07:00")) is None


def test_an_alarm_it_cannot_arm_means_stay_up(tmp_path):
    section = WakeSection(mode="rtc", rtc_wakealarm=tmp_path / "no-rtc/wakealarm")
    scheduler = WakeScheduler(section, [NIGHT])
    with pytest.raises(WakeError):
        scheduler.prepare(at("07:00"))
