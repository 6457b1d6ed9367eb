"""Bad answers and faults: each ends with a clear message and the old config whole."""

from __future__ import annotations

import os
import subprocess

import pytest

from device.config import load_settings
from provisioning.flow import STEPS
from tests.support.broker import free_port
from tests.support.provisioning import recording_runner

# The world and pins fixtures (temp root, mosquitto, registry, mock GPIO).
pytest_plugins = ["tests.support.broker", "tests.support.provisioning"]
pytestmark = pytest.mark.timeout(180)

OLD_CONFIG = b'# the technician\'s old config\n[device]\nid = "old-trap"\n'


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"deployment": {"latitude": 91}}, "deployment.latitude: must be between -90 and 90"),
        ({"deployment": {"longitude": "east"}}, "deployment.longitude: 'east' is not a number"),
        ({"deployment": {"latitude": 0, "longitude": 0}}, "GPS fix is probably missing"),
        ({"deployment": {"country": "XYZ"}}, "unknown country code 'XYZ'"),
        ({"pir": {"pin": 28}}, "pir.pin: must be between 0 and 27"),
        ({"ir": {"pin": 17}}, "GPIO 17 is already the PIR pin"),
        ({"deployment": {"feature_type": "tree"}}, "deployment.feature_type: one of"),
    ],
)
def test_bad_answers_are_refused_by_name_and_nothing_changes(world, override, message):
    world.config.parent.mkdir(parents=True)
    world.config.write_bytes(OLD_CONFIG)
    run = world.provision(world.answers(**override))
    assert run.code == 1
    assert message in run.err
    assert f"{world.config} is unchanged" in run.err
    assert world.config.read_bytes() == OLD_CONFIG
    assert run.runner.calls == []


def test_an_unreachable_broker_fails_the_self_test_and_keeps_the_old_config(world, pins):
    assert world.provision().code == 0
    before = world.config.read_bytes()
    answers = world.answers(
        registration={"method": "keep"},
        broker={"host": "127.0.0.1", "port": free_port()},
        deployment={"habitat": "grassland"},
    )
    run = world.provision(answers)
    assert run.code == 3
    assert "[FAIL] broker connection: 127.0.0.1:" in run.err
    assert "unchanged" in run.err
    assert world.config.read_bytes() == before
    assert ["systemctl", "restart", "camtrap-agent.service"] not in run.runner.calls


@pytest.mark.parametrize("token", ["not-a-token", "reused"])
def test_the_registry_refusing_the_token_stops_before_any_config(world, token, tmp_path):
    if token == "reused":
        token = world.token()
        other = world.answers(registration={"token": token})
        first_root = world.root
        world.root = tmp_path / "other-pi"
        (world.root / "proc").mkdir(parents=True)
        (world.root / "proc/cpuinfo").write_text("Serial\t\t: 00000000feedbeef\n")
        assert world.provision(other, "--accept-failures").code == 0
        world.root = first_root
        expected = "enrolment token was already used"
    else:
        expected = "unknown enrolment token"
    run = world.provision(world.answers(registration={"token": token}))
    assert run.code == 1
    assert f"registry refused (403): {expected}" in run.err
    assert not world.config.exists()
    assert "was not created" in run.err
    assert not (world.root / "etc/camtrap/pki/device.crt").exists()


def test_a_full_disk_leaves_the_old_config_whole(world, pins):
    config_dir = world.root / "etc/camtrap"
    config_dir.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(config_dir)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        assert world.provision().code == 0
        before = world.config.read_bytes()
        filler = config_dir / "filler"
        with pytest.raises(OSError), filler.open("wb") as fh:
            while True:
                fh.write(b"\0" * 4096)
                fh.flush()
                os.fsync(fh.fileno())
        moved = world.answers(
            registration={"method": "keep"}, deployment={"location_name": "tree 99"}
        )
        run = world.provision(moved)
        assert run.code == 1
        assert "No space left on device" in run.err
        assert world.config.read_bytes() == before
        assert not list(config_dir.glob("*.part"))
    finally:
        subprocess.run(["umount", str(config_dir)], check=False)


@pytest.mark.parametrize("step", [*STEPS, "write:config"])
def test_an_interrupt_at_any_step_leaves_a_whole_config(world, pins, step):
    assert world.provision().code == 0
    old = world.config.read_bytes()
    old_id = load_settings(world.config).device.deployment_id

    def interrupt(name: str) -> None:
        if name == step:
            raise KeyboardInterrupt

    runner = recording_runner()
    runner.replies[("systemctl", "is-active")] = runner.replies[("nmcli", "-t")].__class__(0)
    moved = world.answers(registration={"method": "keep"}, deployment={"latitude": -1.5})
    run = world.provision(moved, runner=runner, hook=interrupt)
    assert run.code == 130
    assert f"interrupted during '{step}'" in run.err
    assert not list(world.config.parent.glob("*.part"))
    settings = load_settings(world.config)  # whatever happened, the file loads
    written = STEPS.index(step) > STEPS.index("config") if step in STEPS else False
    if written:
        assert settings.device.deployment_id != old_id
        assert "replaced whole" in run.err
    else:
        assert world.config.read_bytes() == old
        assert "is unchanged" in run.err
    stopped = ["systemctl", "stop", "camtrap-agent.service"] in runner.calls
    if stopped and not written:
        # The trap was running before; an aborted run must not leave it stopped.
        assert runner.calls[-1] == ["systemctl", "start", "camtrap-agent.service"]
