"""Small truths a technician relies on: what an empty config means, which source a bad value
came from, one country check everywhere, and a time zone proposed from where the trap stands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from device.config import ConfigError, LocationSection, load_settings
from device.countries import check_country
from provisioning import geo
from provisioning.questions import BY_KEY, check_given, complete, help_for

BIN = Path(sys.executable).parent
NAIROBI = {"deployment.latitude": -1.2921, "deployment.longitude": 36.8219}


def camtrap(*args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CAMTRAP_")}
    full_env.update(env)
    return subprocess.run(
        [str(BIN / "camtrap"), *args], capture_output=True, text=True, env=full_env, timeout=60
    )


@pytest.mark.parametrize("content", ["", "\n\n", "# nothing set yet\n"])
def test_an_empty_config_file_passes_check_and_says_every_key_is_at_its_default(tmp_path, content):
    path = tmp_path / "camtrap.toml"
    path.write_text(content)
    result = camtrap("config", "check", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{path}: empty: every key at its default"


def test_a_file_with_keys_still_says_ok(tmp_path):
    path = tmp_path / "camtrap.toml"
    path.write_text("[capture]\nburst_frames = 4\n")
    assert camtrap("config", "check", str(path)).stdout.strip() == f"{path}: ok"


def test_a_bad_environment_value_names_the_variable_and_no_file_that_does_not_exist(tmp_path):
    result = camtrap(
        "config",
        "show",
        CAMTRAP_CAPTURE__BURST_FRAMES="abc",
        CAMTRAP_CONFIG=str(tmp_path / "absent.toml"),
    )
    # An explicitly named file that is missing is its own error, first.
    assert "absent.toml: file not found" in result.stderr
    result = camtrap("config", "show", CAMTRAP_CAPTURE__BURST_FRAMES="abc")
    assert result.returncode == 2
    line = result.stderr.strip()
    assert "environment variable CAMTRAP_CAPTURE__BURST_FRAMES" in line
    assert "capture.burst_frames" in line and "/etc/camtrap" not in line


def test_the_environment_is_named_even_when_the_file_sets_the_same_key(tmp_path, monkeypatch):
    path = tmp_path / "camtrap.toml"
    path.write_text("[capture]\nburst_frames = 3\n")
    monkeypatch.setenv("CAMTRAP_CAPTURE__BURST_FRAMES", "abc")
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert str(err.value).startswith("environment variable CAMTRAP_CAPTURE__BURST_FRAMES: ")


@pytest.mark.parametrize(
    ("name", "value", "key"),
    [
        ("CAMTRAP_CAPTURE", '{"burst_frames": "x"}', "capture.burst_frames"),
        ("CAMTRAP_CAPTURE__BURST_FRAMEZ", "3", "capture.burst_framez"),
        ("camtrap_pir__pin", "forty", "pir.pin"),
    ],
)
def test_every_way_of_setting_a_bad_value_by_environment_names_that_variable(
    tmp_path, monkeypatch, name, value, key
):
    path = tmp_path / "camtrap.toml"
    path.write_text("")
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert str(err.value).startswith(f"environment variable {name}: {key}: ")


def test_one_country_check_for_provisioning_classify_and_the_config():
    assert geo.check_country is check_country
    assert check_country(" ken ") == "KEN"
    assert LocationSection(country="ken").country == "KEN"
    for bad, why in [("KE", "three letters"), ("XYZ", "unknown country code 'XYZ'")]:
        with pytest.raises(ValueError, match=why):
            check_country(bad)
        with pytest.raises(ValueError, match=why):
            LocationSection(country=bad)
        with pytest.raises(ValueError, match=why):
            check_given({"deployment.country": bad})


def test_the_time_zone_is_proposed_from_the_location_not_utc():
    answers, _missing = complete({**NAIROBI, "deployment.location_name": "tree 14"}, {})
    assert answers["device.timezone"] == "Africa/Nairobi"
    assert "Africa/Nairobi" in help_for(BY_KEY["device.timezone"], answers)
    # Without a location there is nothing to go on: UTC, and the help says why.
    assert BY_KEY["device.timezone"].default({}) == "UTC"
    assert "No location yet" in help_for(BY_KEY["device.timezone"], {})


def test_an_answers_file_still_sets_the_time_zone_outright():
    given = check_given({**NAIROBI, "device.timezone": "Europe/London"})
    answers, _missing = complete(given, {})
    assert answers["device.timezone"] == "Europe/London"


@pytest.mark.parametrize(
    ("lat", "lon", "zone"),
    [
        (-1.2921, 36.8219, "Africa/Nairobi"),
        (-6.80, 39.28, "Africa/Dar_es_Salaam"),
        (40.71, -74.01, "America/New_York"),
        (51.50, -0.12, "Europe/London"),
    ],
)
def test_without_tzfpy_the_nearest_zone_city_is_proposed_and_said_to_be_rough(
    monkeypatch, lat, lon, zone
):
    monkeypatch.setitem(sys.modules, "tzfpy", None)  # as if it were not installed
    if not geo._zone_cities():
        pytest.skip("no tz database zone table on this machine")
    guess = geo.timezone_at(lat, lon)
    assert guess is not None and guess.zone == zone
    assert "nearest time zone city" in guess.how and "rough" in guess.how


def test_with_tzfpy_the_zone_comes_from_the_boundaries():
    pytest.importorskip("tzfpy")
    # Cape Town: its nearest zone city in the table is Maseru; the boundaries know better.
    guess = geo.timezone_at(-33.92, 18.42)
    assert guess is not None and guess.zone == "Africa/Johannesburg"
    assert "boundaries" in guess.how
