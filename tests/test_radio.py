"""The radio switch (``uplink.radio_control``): NetworkManager's ``nmcli radio`` run for real
(a fake ``nmcli`` on PATH that records its argv), its dry-run form, and "none".

Every switch reports on/off to the energy counters, and no failure of ``nmcli`` is ever more
than one log line.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from device.power.counters import EnergyCounters
from device.power.radio import DryRunRadio, NmcliRadio, NoRadio, open_radio
from tests.support.world import trap_settings


class Seconds:
    """A fake monotonic clock for the counters."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def fake_nmcli(bin_dir: Path, *, exit_code: int = 0, stderr: str = "") -> Path:
    """An ``nmcli`` that appends its argv (one line, space-joined) to ``calls`` and exits."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    calls = bin_dir / "calls"
    script = bin_dir / "nmcli"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "nmcli $*" >> "{calls}"\n'
        + (f"echo '{stderr}' >&2\n" if stderr else "")
        + f"exit {exit_code}\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return calls


@pytest.fixture
def on_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Put ``tmp_path/bin`` first on PATH, so the switch runs the fake ``nmcli``."""
    bin_dir = tmp_path / "bin"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return bin_dir


def test_nmcli_switches_the_named_radio_with_the_real_command(on_path: Path) -> None:
    calls = fake_nmcli(on_path)
    radio = NmcliRadio("wwan")

    radio.off()
    assert not radio.is_on
    radio.on()

    assert radio.is_on
    assert calls.read_text().splitlines() == ["nmcli radio wwan off", "nmcli radio wwan on"]
    assert radio.describe() == "nmcli radio wwan (on)"


def test_a_failing_nmcli_is_one_line_naming_the_command_and_the_radio_stays_as_it_was(
    on_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake_nmcli(on_path, exit_code=1, stderr="Error: Not authorized to enable/disable Wi-Fi.")
    radio = NmcliRadio("wifi")

    with caplog.at_level(logging.INFO, logger="camtrap.power"):
        radio.off()

    assert radio.is_on, "a switch that failed is not believed to have happened"
    [line] = [r.getMessage() for r in caplog.records]
    assert line == (
        "radio: `nmcli radio wifi off` failed: Error: Not authorized to enable/disable Wi-Fi."
    )
    assert radio.last_error is not None and "nmcli radio wifi off" in radio.last_error


def test_no_nmcli_at_all_is_one_line_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    radio = NmcliRadio("wifi")
    with caplog.at_level(logging.WARNING, logger="camtrap.power"):
        radio.off()
    assert radio.is_on
    assert [r.getMessage() for r in caplog.records] == [
        "radio: `nmcli radio wifi off` failed: nmcli not found (is NetworkManager installed?)"
    ]


def test_dry_run_records_the_exact_commands_and_keeps_the_state(
    caplog: pytest.LogCaptureFixture,
) -> None:
    radio = DryRunRadio("all")
    with caplog.at_level(logging.INFO, logger="camtrap.power"):
        radio.off()
        radio.on()
        radio.off()

    assert radio.commands == [
        ["nmcli", "radio", "all", "off"],
        ["nmcli", "radio", "all", "on"],
        ["nmcli", "radio", "all", "off"],
    ]
    assert not radio.is_on
    assert [r.getMessage() for r in caplog.records] == [
        "radio off (dry-run): would run `nmcli radio all off`",
        "radio on (dry-run): would run `nmcli radio all on`",
        "radio off (dry-run): would run `nmcli radio all off`",
    ]
    assert radio.describe() == "dry-run nmcli radio all (off)"


def test_radio_on_seconds_come_from_the_switch(on_path: Path) -> None:
    fake_nmcli(on_path)
    clock = Seconds()
    counters = EnergyCounters(clock=clock, radio_always_on=False)
    radio = NmcliRadio("wifi", counters)  # found on: the radio counts from here

    clock.now = 100.0
    radio.off()
    clock.now = 1000.0  # off for 900 s
    radio.on()
    clock.now = 1050.0

    assert counters.snapshot().radio_on_s == pytest.approx(150.0)
    assert counters.radio_is_on


def test_a_failed_switch_leaves_the_counters_counting(on_path: Path) -> None:
    fake_nmcli(on_path, exit_code=8, stderr="Error: NetworkManager is not running.")
    clock = Seconds()
    counters = EnergyCounters(clock=clock, radio_always_on=False)
    radio = NmcliRadio("wifi", counters)
    radio.off()
    clock.now = 60.0
    assert counters.snapshot().radio_on_s == pytest.approx(60.0)


def test_none_is_always_on_and_switches_nothing(on_path: Path) -> None:
    calls = fake_nmcli(on_path)
    clock = Seconds()
    counters = EnergyCounters(clock=clock, radio_always_on=False)
    radio = NoRadio(counters)
    radio.off()
    clock.now = 30.0
    assert radio.is_on
    assert counters.snapshot().radio_on_s == pytest.approx(30.0)
    assert not calls.exists()
    assert "always on" in radio.describe()


@pytest.mark.parametrize(
    ("control", "kind"),
    [("none", NoRadio), ("nmcli", NmcliRadio), ("dry-run", DryRunRadio)],
)
def test_the_config_picks_the_switch(tmp_path: Path, control: str, kind: type) -> None:
    settings = trap_settings(tmp_path, uplink={"radio_control": control, "radio": "wwan"})
    radio = open_radio(settings.uplink, EnergyCounters())
    assert isinstance(radio, kind)
    if not isinstance(radio, NoRadio):
        assert radio.radio == "wwan"
