"""Daily windows: the one spelling of capture windows, sync windows and wake schedules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from device.config import ConfigError, Settings, load_settings
from device.contracts.windows import Schedule, WindowError, parse_window

NAIROBI = "Africa/Nairobi"  # UTC+3, no daylight saving


def at(hour: int, minute: int = 0, day: int = 2) -> datetime:
    """A moment in Nairobi, given in local time, as an aware datetime."""
    return datetime(2026, 12, day, hour, minute, tzinfo=UTC) - timedelta(hours=3)


def test_an_overnight_window_is_open_after_its_start_and_before_its_end() -> None:
    dusk_to_dawn = Schedule.parse(["18:00-06:00"], NAIROBI)
    assert dusk_to_dawn.is_open(at(18))
    assert dusk_to_dawn.is_open(at(2))
    assert not dusk_to_dawn.is_open(at(6))
    assert not dusk_to_dawn.is_open(at(12))


def test_the_next_change_is_the_next_edge_that_changes_the_state() -> None:
    schedule = Schedule.parse(["18:00-06:00"], NAIROBI)
    assert schedule.next_change(at(12)) == at(18)
    assert schedule.next_change(at(23)) == at(6, day=3)
    assert schedule.seconds_until_change(at(17, 30)) == 1800


def test_overlapping_windows_change_state_only_where_the_union_does() -> None:
    schedule = Schedule.parse(["05:00-07:00", "06:30-08:00"], NAIROBI)
    assert schedule.next_change(at(5, 30)) == at(8)
    assert schedule.next_open(at(9)) == at(5, day=3)


def test_no_windows_means_always_open_and_never_changing() -> None:
    always = Schedule.parse([], NAIROBI)
    assert always.is_open(at(3)) and always.next_change(at(3)) is None
    assert str(always) == "always"


def test_windows_covering_the_whole_day_never_change() -> None:
    assert Schedule.parse(["00:00-12:00", "12:00-00:00"]).next_change(at(3)) is None


def test_windows_follow_daylight_saving_time() -> None:
    # Europe/Berlin leaves summer time on 2026-10-25: 20:00 local is 18:00 UTC before, 19:00 after.
    schedule = Schedule.parse(["20:00-21:00"], "Europe/Berlin")
    before = datetime(2026, 10, 24, 12, tzinfo=UTC)
    assert schedule.next_open(before) == datetime(2026, 10, 24, 18, tzinfo=UTC)
    after = datetime(2026, 10, 25, 12, tzinfo=UTC)
    assert schedule.next_open(after) == datetime(2026, 10, 25, 19, tzinfo=UTC)


@pytest.mark.parametrize(
    ("spec", "says"),
    [("18:00", "no '-'"), ("25:00-01:00", "'25:00'"), ("06:00-06:00", "empty"), ("a-b", "'a'")],
)
def test_a_malformed_window_is_refused_with_the_window_named(spec: str, says: str) -> None:
    with pytest.raises(WindowError, match=says):
        parse_window(spec)


def test_the_config_names_the_key_of_a_bad_window(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("CAMTRAP_CONFIG", raising=False)
    path = tmp_path / "camtrap.toml"
    path.write_text('[uplink]\nsync_windows = ["12:00-12:30", "noon"]\n')
    with pytest.raises(ConfigError, match=r"camtrap.toml: uplink.sync_windows: .*'noon'"):
        load_settings(path)
    assert Settings(power={"capture_windows": ["19:30-05:15"]}).power.capture_windows


def test_a_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        Schedule.parse(["18:00-06:00"]).is_open(datetime(2026, 12, 2, 12))
