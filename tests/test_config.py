"""Configuration: one model, unknown keys refused, errors name the key and the file."""

from __future__ import annotations

import subprocess
import sys

import pytest

from device.config import ConfigError, load_settings, redacted, to_toml

CLI = [sys.executable, "-m", "device.cli"]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CAMTRAP_")}
    full_env.update(env or {})
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=full_env, timeout=60)


def test_a_missing_default_file_means_all_defaults(monkeypatch, tmp_path):
    monkeypatch.delenv("CAMTRAP_CONFIG", raising=False)
    monkeypatch.setattr("device.config.DEFAULT_CONFIG_PATH", tmp_path / "absent.toml")
    assert load_settings().capture.burst_frames == 3


def test_a_missing_file_named_explicitly_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("CAMTRAP_CONFIG", str(tmp_path / "absent.toml"))
    with pytest.raises(ConfigError, match=r"absent\.toml: file not found"):
        load_settings()


def test_file_values_are_read_and_environment_overrides_them(monkeypatch, tmp_path):
    path = tmp_path / "camtrap.toml"
    path.write_text('[capture]\nburst_frames = 5\n[device]\nid = "trap-7"\n')
    assert load_settings(path).capture.burst_frames == 5
    monkeypatch.setenv("CAMTRAP_CAPTURE__BURST_FRAMES", "8")
    settings = load_settings(path)
    assert settings.capture.burst_frames == 8
    assert settings.device.id == "trap-7"


def test_an_unknown_key_names_the_key_and_the_file(tmp_path):
    path = tmp_path / "camtrap.toml"
    path.write_text("[capture]\nburst_frame = 5\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert str(err.value) == f"{path}: capture.burst_frame: unknown key"


def test_an_unknown_section_is_refused(tmp_path):
    path = tmp_path / "camtrap.toml"
    path.write_text("[captur]\nburst_frames = 5\n")
    with pytest.raises(ConfigError, match=r"camtrap.toml: captur: unknown key"):
        load_settings(path)


def test_a_bad_value_names_the_key_and_the_file(tmp_path):
    path = tmp_path / "camtrap.toml"
    path.write_text("[pir]\npin = 40\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert str(err.value).startswith(f"{path}: pir.pin: ")
    assert "27" in str(err.value)


def test_a_bad_environment_value_names_the_variable(monkeypatch, tmp_path):
    path = tmp_path / "camtrap.toml"
    path.write_text("")
    monkeypatch.setenv("CAMTRAP_CAPTURE__BURST_FRAMES", "zero")
    with pytest.raises(ConfigError, match="environment variable CAMTRAP_CAPTURE__BURST_FRAMES"):
        load_settings(path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"[capture\nburst_frames = 1", "not valid TOML"),
        (b"\xff\xfe\x00garbage", "not valid"),
    ],
)
def test_unparsable_files_are_named(tmp_path, content, expected):
    path = tmp_path / "camtrap.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=expected) as err:
        load_settings(path)
    assert str(path) in str(err.value)


def test_a_directory_instead_of_a_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        load_settings(tmp_path)


def test_unknown_time_zone_is_refused(tmp_path):
    path = tmp_path / "camtrap.toml"
    path.write_text('[device]\ntimezone = "Mars/Olympus"\n')
    with pytest.raises(ConfigError, match=r"device\.timezone: .*Mars/Olympus"):
        load_settings(path)


def test_config_check_exits_2_with_one_line_naming_key_and_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[camera]\njpeg_quality = 400\n")
    result = run_cli("config", "check", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert str(path) in lines[0] and "camera.jpeg_quality" in lines[0]


def test_config_check_accepts_a_good_file(tmp_path):
    path = tmp_path / "good.toml"
    path.write_text("[camera]\njpeg_quality = 80\n")
    result = run_cli("config", "check", str(path))
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_run_with_a_bad_config_exits_2_naming_key_and_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[storage]\ncommit_batch_max = -1\n")
    result = run_cli("--config", str(path), "run")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "storage.commit_batch_max" in result.stderr and str(path) in result.stderr


def test_config_show_round_trips_as_toml(tmp_path):
    path = tmp_path / "camtrap.toml"
    path.write_text('[device]\nid = "trap-9"\n')
    result = run_cli("--config", str(path), "config", "show")
    assert result.returncode == 0, result.stderr
    again = tmp_path / "again.toml"
    again.write_text(result.stdout)
    assert load_settings(again).device.id == "trap-9"


def test_secrets_are_masked_everywhere_they_are_shown():
    from pydantic import SecretStr

    from device.config import Section, Settings

    secret_fields = [
        (section_name, field_name)
        for section_name, section in Settings.model_fields.items()
        for field_name, info in section.annotation.model_fields.items()  # type: ignore[union-attr]
        if "SecretStr" in str(info.annotation)
    ]
    settings = Settings()
    for section_name, field_name in secret_fields:
        section: Section = getattr(settings, section_name)
        setattr(section, field_name, SecretStr("hunter2-very-secret"))
    shown = to_toml(redacted(settings))
    assert "hunter2-very-secret" not in shown
    assert "hunter2-very-secret" not in repr(settings)
    for _, field_name in secret_fields:
        assert f'{field_name} = "********"' in shown
