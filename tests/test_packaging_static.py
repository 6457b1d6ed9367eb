"""The Debian packaging, checked statically: the unit, the vendored pins, what gets shipped.

The heavy checks (build, install, upgrade, purge, arm64 under QEMU) are `make deb-test` and
`make deb-test-arm64`; these run in milliseconds and catch drift between debian/ and the code.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from device import __version__
from device.config import Settings

ROOT = Path(__file__).resolve().parent.parent
DEBIAN = ROOT / "debian"
UNIT = DEBIAN / "camtrap-agent.service"


def unit_settings() -> dict[str, list[str]]:
    """Directive -> every value it is given in [Service] (comments and blanks dropped)."""
    values: dict[str, list[str]] = {}
    section = None
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def test_the_unit_runs_the_agent_as_a_notify_service_with_a_watchdog():
    service = unit_settings()
    assert service["Type"] == ["notify"]
    assert service["ExecStart"] == ["/usr/bin/camtrap run"]
    assert service["Restart"] == ["on-failure"]
    assert int(service["WatchdogSec"][0]) > 0
    assert service["User"] == ["camtrap"]


def test_the_unit_writes_only_where_the_agent_keeps_its_data():
    service = unit_settings()
    storage = Settings().storage
    assert service["ProtectSystem"] == ["strict"]
    # The data dir, and the RTC wake alarm the trap arms before it halts (wake.mode = "rtc";
    # "-": skipped on a board without an RTC).
    assert service["ReadWritePaths"] == [
        str(storage.data_dir),
        "-" + str(Settings().wake.rtc_wakealarm),
    ]
    assert service["StateDirectory"] == [storage.data_dir.name]
    assert str(storage.data_dir) == f"/var/lib/{service['StateDirectory'][0]}"
    # The RAM fallback spool lives in the unit's runtime directory.
    assert storage.fallback_dir.is_relative_to(f"/run/{service['RuntimeDirectory'][0]}")
    assert service["ConfigurationDirectory"] == ["camtrap"]


def test_the_unit_turns_on_the_hardening_the_issue_asks_for():
    service = unit_settings()
    for directive in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert service[directive] == ["yes"], directive
    assert service["DevicePolicy"] == ["closed"]
    assert all(v.endswith(" rw") for v in service["DeviceAllow"])
    assert service["CapabilityBoundingSet"] == [""]


def test_every_protection_left_off_is_justified_in_a_comment():
    text = UNIT.read_text()
    service = unit_settings()
    for directive in ("PrivateDevices", "PrivateNetwork", "ProtectClock", "PrivateUsers"):
        assert directive not in service
        assert re.search(rf"^# {directive}=\S+ .+", text, re.M), f"{directive} unexplained"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not here")
def test_systemd_rates_the_unit_at_an_exposure_of_3_or_less():
    version = subprocess.run(["systemctl", "--version"], capture_output=True, text=True)
    if int(version.stdout.split()[1]) < 252:
        pytest.skip("systemd-analyze security --offline needs systemd >= 252")
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for .*: ([0-9.]+)", result.stdout + result.stderr)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 3.0


def vendor_requirements() -> list[tuple[Requirement, list[str]]]:
    text = (DEBIAN / "vendor-requirements.txt").read_text().replace("\\\n", " ")
    pins = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            spec, *options = line.split(" --hash=")
            pins.append((Requirement(spec.strip()), [o.strip() for o in options]))
    return pins


def test_every_vendored_wheel_is_pinned_exactly_with_sha256_hashes():
    pins = vendor_requirements()
    assert pins
    for requirement, hashes in pins:
        assert re.fullmatch(r"==[\w.]+", str(requirement.specifier)), requirement
        assert hashes, f"{requirement.name} has no hash"
        assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes), requirement


def test_compiled_wheels_are_pinned_for_both_architectures():
    hashes = {req.name: h for req, h in vendor_requirements()}
    # One x86_64 and one aarch64 wheel each.
    assert len(hashes["pydantic-core"]) == 2
    assert len(hashes["ai-edge-litert"]) == 2


def test_every_runtime_dependency_is_vendored_or_comes_from_apt():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    vendored = {req.name: req for req, _ in vendor_requirements()}
    control = (DEBIAN / "control").read_text()
    from_apt = {
        "numpy": "python3-numpy",
        "pillow": "python3-pil",
        "tomli-w": "python3-tomli-w",
        "gpiozero": "python3-gpiozero",
        "cryptography": "python3-cryptography",
        "qrcode": "python3-qrcode",
        "packaging": "python3-packaging",
        "smbus2": "python3-smbus2",
    }
    for line in project["dependencies"]:
        requirement = Requirement(line)
        if requirement.name in vendored:
            pinned = next(iter(vendored[requirement.name].specifier)).version
            assert requirement.specifier.contains(pinned), f"{requirement} vs pin {pinned}"
        else:
            assert requirement.name in from_apt, f"{requirement.name}: neither vendored nor apt"
            assert from_apt[requirement.name] in control


def test_the_package_version_is_the_code_version():
    first = (DEBIAN / "changelog").read_text().splitlines()[0]
    assert re.match(rf"camtrap \({re.escape(__version__)}(-\d+)?\) ", first), first


def test_the_wrappers_run_the_projects_console_scripts():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for name, target in scripts.items():
        if name == "camtrap-cloud":
            continue  # not packaged (docs/packaging.md says why)
        module, function = target.split(":")
        wrapper = (DEBIAN / "bin" / name).read_text()
        assert wrapper.startswith("#!/usr/bin/python3 ")
        assert f"from {module} import {function}" in wrapper


def test_the_shipped_tree_holds_runtime_code_and_data_but_no_build_scripts(tmp_path):
    subprocess.run([DEBIAN / "tools" / "install-tree", ROOT, tmp_path], check=True)
    shipped = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    pack = "device/models/efficientnet-lite0-imagenet"
    for name in ("manifest.json", "model.tflite", "labels.txt", "taxonomy.json", "NOTICE"):
        assert f"{pack}/{name}" in shipped
    assert any(p.startswith(f"{pack}/golden/") and p.endswith(".jpg") for p in shipped)
    assert any(p.startswith("device/hardware/scenes/") and p.endswith(".jpg") for p in shipped)
    assert "device/cli.py" in shipped and "provisioning/cli.py" in shipped
    # Build scripts and their inputs stay in the source tree.
    assert not [p for p in shipped if re.fullmatch(r"device/models/[^/]+", p)]
    assert not [p for p in shipped if "__pycache__" in p or p.endswith((".pyc", ".md"))]


@pytest.mark.parametrize(
    "script",
    ["camtrap-agent.postinst", "camtrap-agent.postrm", "tools/build-debs", "tools/deb-scenario"],
)
def test_shell_scripts_parse(script):
    subprocess.run(["sh", "-n", DEBIAN / script], check=True)


def test_purge_and_only_purge_removes_data_and_config():
    postrm = (DEBIAN / "camtrap-agent.postrm").read_text()
    purge_branch = postrm.split('if [ "$1" = "purge" ]; then', 1)[1].split("\nfi\n", 1)[0]
    assert "rm -rf /var/lib/camtrap" in purge_branch
    assert "/etc/camtrap" in purge_branch
    assert postrm.count("rm -rf") == purge_branch.count("rm -rf")


def test_the_polkit_rule_grants_the_camtrap_user_only_the_radio_and_power_off():
    rule = (DEBIAN / "polkit" / "50-camtrap-agent.rules").read_text()
    assert 'subject.user !== "camtrap"' in rule
    granted = set(re.findall(r'case "([^"]+)":', rule))
    assert granted == {
        "org.freedesktop.NetworkManager.enable-disable-wifi",
        "org.freedesktop.NetworkManager.enable-disable-wwan",
        "org.freedesktop.login1.power-off",
        "org.freedesktop.login1.power-off-multiple-sessions",
    }
    assert "usr/share/polkit-1/rules.d" in (DEBIAN / "camtrap-agent.install").read_text()


def test_the_rtc_rule_opens_only_the_wake_alarm_to_the_camtrap_group():
    rule = (DEBIAN / "camtrap-agent.camtrap-rtc.udev").read_text()
    actions = [line for line in rule.splitlines() if line and not line.startswith("#")]
    assert actions == [
        'ACTION=="add", SUBSYSTEM=="rtc", KERNEL=="rtc0", RUN+="/bin/chgrp camtrap'
        ' /sys%p/wakealarm", RUN+="/bin/chmod g+w /sys%p/wakealarm"'
    ]
