"""No traceback reaches the user: every error of the three programs is one line on stderr that
names the thing and the reason, with the exit code docs/agent.md lists ("Exit codes").

Each test runs the installed console script as a technician would, in a world of its own.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from device.exitcodes import Exit
from tests.support.world import write_jpegs
from tests.test_vision_pack import make_pack

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
# Printed by the TFLite runtime itself when an interpreter starts; not ours to word.
RUNTIME_NOISE = re.compile(r"^INFO: Created TensorFlow Lite XNNPACK delegate")


def run(prog: str, *args: str, config: Path | None = None, **env: str):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("CAMTRAP_", "GPIOZERO_"))}
    if config is not None:
        full_env["CAMTRAP_CONFIG"] = str(config)
    full_env.update(env)
    return subprocess.run(
        [str(BIN / prog), *args], capture_output=True, text=True, env=full_env, timeout=180
    )


def one_error_line(result, code: int, *names: str) -> str:
    """The run exited ``code`` with exactly one stderr line, naming each of ``names``."""
    lines = [
        line
        for line in result.stderr.splitlines()
        if line.strip() and not RUNTIME_NOISE.match(line)
    ]
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == code, result.stderr
    assert len(lines) == 1, result.stderr
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


def trap_config(tmp_path: Path, **sections: str) -> Path:
    """A config for a trap under tmp_path: no uplink, no vision, a quiet clock, text logs."""
    base = {
        "storage": f'data_dir = "{tmp_path}/data"\nfallback_dir = "{tmp_path}/fallback"',
        "clock": (
            f'kernel_status = false\ntimesync_flag = "{tmp_path}/ts"\n'
            f'rtc_device = "{tmp_path}/rtc"\nmanual_marker = "{tmp_path}/manual"'
        ),
        "vision": "enabled = false",
        "uplink": 'transport = "none"',
        "log": 'format = "text"',
        "ota": "enabled = false",
        **sections,
    }
    path = tmp_path / "camtrap.toml"
    path.write_text("".join(f"[{name}]\n{body}\n" for name, body in base.items()))
    (tmp_path / "data").mkdir(exist_ok=True)
    return path


# -- camtrap run: missing hardware is exit 69, one log line, one stderr line ------------------


@pytest.mark.skipif(
    importlib.util.find_spec("picamera2") is not None, reason="picamera2 is installed here"
)
def test_run_without_picamera2_names_the_camera_and_exits_unavailable(tmp_path):
    config = trap_config(tmp_path, pir='pin_factory = "mock"', camera='backend = "picamera2"')
    result = run("camtrap", "run", config=config)
    line = one_error_line(result, Exit.UNAVAILABLE, "camera", "picamera2")
    assert line.startswith("camtrap: hardware unavailable:")
    logged = [x for x in result.stdout.splitlines() if "hardware unavailable" in x]
    assert len(logged) == 1 and "ERROR" in logged[0]


@pytest.mark.skipif(
    any(importlib.util.find_spec(m) for m in ("lgpio", "RPi", "pigpio")),
    reason="a real GPIO pin library is installed here",
)
def test_run_without_a_gpio_pin_library_names_the_pin_and_exits_unavailable(tmp_path):
    config = trap_config(tmp_path, pir='pin_factory = "auto"', camera='backend = "synthetic"')
    result = run("camtrap", "run", config=config)
    one_error_line(result, Exit.UNAVAILABLE, "GPIO17", "pir.pin", "pin_factory")
    assert "PinFactoryFallback" not in result.stderr


def test_debug_shows_the_traceback_and_still_ends_with_the_one_line(tmp_path):
    config = trap_config(tmp_path, pir='pin_factory = "mock"', camera='backend = "picamera2"')
    for how in (("--debug", "run"), ("run", "--debug")):
        result = run("camtrap", *how, config=config)
        assert result.returncode == Exit.UNAVAILABLE
        assert "Traceback" in result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith("camtrap: hardware unavailable")
    result = run("camtrap", "run", config=config, CAMTRAP_DEBUG="1")
    assert result.returncode == Exit.UNAVAILABLE and "Traceback" in result.stderr


def test_the_unit_restarts_on_missing_hardware_on_purpose_and_never_on_usage_errors():
    unit = (ROOT / "debian" / "camtrap-agent.service").read_text()
    prevented = re.search(r"^RestartPreventExitStatus=(.*)$", unit, re.M)
    assert prevented is not None and prevented.group(1).split() == [str(int(Exit.USAGE))]
    assert re.search(r"^Restart=on-failure$", unit, re.M)
    assert re.search(r"^# Exit 69 is missing hardware", unit, re.M)  # the reason is written


# -- camtrap simulate ------------------------------------------------------------------------


def test_simulate_from_a_missing_images_dir_is_no_input(tmp_path):
    result = run("camtrap", "simulate", "--images", str(tmp_path / "nowhere"),
                 config=trap_config(tmp_path))  # fmt: skip
    one_error_line(result, Exit.NO_INPUT, str(tmp_path / "nowhere"), "--images")


def test_simulate_from_an_images_dir_without_jpegs_is_a_data_error(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no pictures here")
    result = run("camtrap", "simulate", "--images", str(tmp_path / "empty"),
                 config=trap_config(tmp_path))  # fmt: skip
    one_error_line(result, Exit.DATA_ERROR, str(tmp_path / "empty"), ".jpg")


@pytest.mark.parametrize("triggers", ["-1", "10001", "99999999999"])
def test_simulate_triggers_out_of_bounds_says_the_bound(tmp_path, triggers):
    result = run("camtrap", "simulate", "--triggers", triggers, config=trap_config(tmp_path))
    one_error_line(result, Exit.USAGE, f"--triggers {triggers}", "10000")


def test_a_bad_argument_is_one_line_not_a_usage_block(tmp_path):
    result = run("camtrap", "simulate", "--triggers", "many", config=trap_config(tmp_path))
    one_error_line(result, Exit.USAGE, "--triggers", "'many'", "--help")


# -- camtrap classify and eval ---------------------------------------------------------------


def vision_config(tmp_path: Path) -> Path:
    pack = make_pack(tmp_path / "pack")
    return trap_config(tmp_path, vision=f'pack = "{pack}"\nself_test = false')


def test_classify_a_missing_image_is_no_input(tmp_path):
    result = run("camtrap", "classify", str(tmp_path / "gone.jpg"), config=vision_config(tmp_path))
    one_error_line(result, Exit.NO_INPUT, str(tmp_path / "gone.jpg"))


def test_classify_an_empty_directory_is_a_data_error(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run("camtrap", "classify", str(tmp_path / "empty"), config=vision_config(tmp_path))
    one_error_line(result, Exit.DATA_ERROR, str(tmp_path / "empty"), "no image files")


def test_classify_a_corrupt_image_says_so_per_file_and_exits_data_error(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not a whole JPEG")
    result = run("camtrap", "classify", str(bad), config=vision_config(tmp_path))
    assert result.returncode == Exit.DATA_ERROR and "Traceback" not in result.stderr
    lines = [x for x in result.stderr.splitlines() if x and not RUNTIME_NOISE.match(x)]
    assert lines[0].startswith(f"camtrap classify: {bad}: ")  # the file, and why
    assert lines[-1] == "camtrap: classify: none of the 1 file(s) could be classified"


def test_classify_refuses_a_country_code_provisioning_would_refuse(tmp_path):
    img = write_jpegs(tmp_path / "imgs", 1)[0]
    result = run("camtrap", "classify", str(img), "--country", "XYZ",
                 config=vision_config(tmp_path))  # fmt: skip
    one_error_line(result, Exit.USAGE, "--country XYZ", "unknown country code 'XYZ'")


def test_eval_plot_to_a_path_that_cannot_be_written_names_the_path(tmp_path):
    config = vision_config(tmp_path)
    target = tmp_path / "no-such-dir" / "pr.png"
    result = run("camtrap", "eval", "--synthetic", "1", "--plot", str(target), config=config)
    one_error_line(result, Exit.CANT_CREATE, str(target), "does not exist")
    result = run("camtrap", "eval", "--synthetic", "1", "--plot", str(tmp_path), config=config)
    one_error_line(result, Exit.CANT_CREATE, str(tmp_path), "is a directory")


def test_eval_without_its_labels_file_is_no_input(tmp_path):
    (tmp_path / "imgs").mkdir()
    result = run("camtrap", "eval", str(tmp_path / "imgs"), config=vision_config(tmp_path))
    one_error_line(result, Exit.NO_INPUT, str(tmp_path / "imgs" / "labels.csv"))


def test_eval_with_a_labels_file_that_is_not_text_names_it(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "labels.csv").write_bytes(b"\xff\xfe\x00\x01file,label")
    result = run("camtrap", "eval", str(tmp_path / "imgs"), config=vision_config(tmp_path))
    one_error_line(result, Exit.DATA_ERROR, "labels.csv", "UTF-8")


# -- config and very long or odd input -----------------------------------------------------


def test_a_path_thousands_of_characters_long_is_one_short_line(tmp_path):
    # A config file that cannot be read is a config error, like a missing one: exit 2.
    result = run("camtrap", "config", "check", "a" * 5000)
    line = one_error_line(result, Exit.USAGE, "5000 characters")
    assert len(line) < 400


def test_a_config_file_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "camtrap.toml"
    path.write_bytes("[device]\nid = 'caf\u00e9'\n".encode("latin-1"))
    one_error_line(run("camtrap", "config", "check", str(path)), Exit.USAGE, str(path), "UTF-8")


# -- camtrap-provision and camtrap-cloud -----------------------------------------------------


def test_provision_with_a_missing_answers_file_names_it(tmp_path):
    result = run("camtrap-provision", "--root", str(tmp_path), "--dry-run",
                 "--non-interactive", "--answers", str(tmp_path / "answers.toml"))  # fmt: skip
    one_error_line(result, Exit.USAGE, str(tmp_path / "answers.toml"), "No such file")


def test_provision_with_an_answers_file_that_is_not_text_names_it(tmp_path):
    answers = tmp_path / "answers.toml"
    answers.write_bytes(b"\xff\xfe[deployment]")
    result = run("camtrap-provision", "--root", str(tmp_path), "--dry-run",
                 "--non-interactive", "--answers", str(answers))  # fmt: skip
    one_error_line(result, Exit.USAGE, str(answers), "UTF-8")


def test_provision_and_cloud_usage_errors_are_one_line(tmp_path):
    one_error_line(run("camtrap-provision", "--pir-timeout", "soon"), Exit.USAGE, "--pir-timeout")
    one_error_line(run("camtrap-cloud", "--log-level", "loud", "ca", "init", str(tmp_path)),
                   Exit.USAGE, "--log-level", "'LOUD'")  # fmt: skip


def test_cloud_ca_sign_without_a_ca_names_the_missing_file(tmp_path):
    result = run("camtrap-cloud", "ca", "sign", str(tmp_path / "ca"), str(tmp_path / "x.csr"),
                 "pi-1", str(tmp_path / "pi-1.crt"))  # fmt: skip
    one_error_line(result, Exit.NO_INPUT, str(tmp_path / "ca"), "No such file")


def test_cloud_debug_flag_is_accepted_and_shows_a_traceback(tmp_path):
    result = run("camtrap-cloud", "--debug", "ca", "sign", str(tmp_path / "ca"),
                 str(tmp_path / "x.csr"), "pi-1", str(tmp_path / "pi-1.crt"))  # fmt: skip
    assert result.returncode == Exit.NO_INPUT and "Traceback" in result.stderr
