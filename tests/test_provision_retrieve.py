"""--retrieve: the deployment ends (locally and in the registry), a final sync runs, and what
is still on the card is listed."""

from __future__ import annotations

import io
import json

import pytest

from cloud_stub.registry.store import RegistryStore
from device.config import load_settings
from device.simulate import SimulationPlan, run_simulation
from provisioning.cli import main
from provisioning.system import Result
from tests.support.provisioning import recording_runner

# The world and pins fixtures (temp root, mosquitto, registry, mock GPIO).
pytest_plugins = ["tests.support.broker", "tests.support.provisioning"]
pytestmark = pytest.mark.timeout(180)

SYNC = ["/opt/camtrap/bin/camtrap"]


def retrieve(world, runner) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["--root", str(world.root), "--retrieve"], runner=runner, out=out, sync_argv=SYNC)
    return code, out.getvalue()


def test_retrieval_ends_the_deployment_syncs_and_lists_what_is_left(world, pins):
    assert world.provision().code == 0
    settings = load_settings(world.config)
    run_simulation(
        settings,
        SimulationPlan(triggers=1, data_dir=settings.storage.data_dir, timelapse=False),
    )
    runner = recording_runner()
    runner.replies[(SYNC[0],)] = Result(0, "synced 0 items\n")
    code, out = retrieve(world, runner)

    sync = [SYNC[0], "--config", str(world.config), "sync", "--timeout", "600"]
    assert sync in runner.calls
    assert runner.calls.index(["systemctl", "stop", "camtrap-agent.service"]) < (
        runner.calls.index(sync)
    )
    assert ["systemctl", "disable", "camtrap-agent.service"] in runner.calls
    assert "sync finished" in out
    assert "media:" in out and "item(s)" in out  # the simulated frames are still queued
    assert code == 4

    (record,) = RegistryStore(world.registry_root).deployments()
    assert record["deploymentEnd"] is not None
    history = json.loads((world.root / "var/lib/camtrap/deployments.json").read_text())
    assert history["deployments"][-1]["deploymentEnd"] == record["deploymentEnd"]


def test_without_a_sync_command_retrieval_says_so_plainly(world, pins):
    assert world.provision().code == 0
    runner = recording_runner()
    runner.replies[(SYNC[0],)] = Result(127, "", f"{SYNC[0]}: command not found")
    code, out = retrieve(world, runner)
    assert f"NOT SYNCED: {SYNC[0]} not found on this system" in out
    assert code == 4


def test_retrieving_a_trap_that_was_never_provisioned_is_a_clear_error(world):
    err = io.StringIO()
    import contextlib

    with contextlib.redirect_stderr(err):
        code = main(["--root", str(world.root), "--retrieve"], runner=recording_runner())
    assert code == 1
    assert "this trap is not provisioned" in err.getvalue()
