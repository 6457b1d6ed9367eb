"""OTA inside a running agent, over a real mosquitto: ``agent_hooks.attach`` is lent the
agent's link, its classification worker's serving door and the command callbacks the agent
built, and through them the cloud's retained config and its commands reach the trap."""

from __future__ import annotations

from pathlib import Path

from cloud_stub.models import rollout as ro
from device.agent import Agent
from device.config import Settings
from device.ota.engine_guard import EngineGuard
from device.store.db import open_readonly
from device.store.store import DB_NAME
from tests.support.broker import Broker
from tests.support.uplink import wait_until
from tests.support.world import trap_settings
from tests.test_ota_signing import PACK_NAME, OtaWorld, make_pack, ota_world

DEVICE = "trap-a"


def agent_settings(world: OtaWorld, broker: Broker) -> Settings:
    home = world.tmp / DEVICE
    cert, key = broker.client_cert(DEVICE)
    return trap_settings(
        home,
        device={"id": DEVICE, "deployment_id": "dep-1"},
        vision={"enabled": True, "pack": make_pack(home / "factory-pack", "1.0.0")},
        uplink={
            "transport": "mqtt",
            "network_manager": False,
            "mqtt": {
                "host": "127.0.0.1",
                "port": broker.port,
                "ca_file": broker.ca_file,
                "cert_file": cert,
                "key_file": key,
                "connect_timeout_s": 5,
            },
        },
        ota={"trusted_keys": [str(world.pub)], "trusted_keys_dir": home / "no-package-keys"},
    )


def test_a_retained_config_and_a_capture_test_reach_the_running_agent(tmp_path, broker):
    with ota_world(tmp_path, broker) as world:
        # Sent before the trap is up: the broker keeps it, the agent's route receives it.
        world.send(ro.desired_config(DEVICE, 2, {"capture": {"burst_frames": 2}}), retain=True)
        settings = agent_settings(world, broker)
        agent = Agent(settings)
        agent.start()
        try:
            assert wait_until(lambda: world.events(DEVICE, "config."))
            assert agent.settings.capture.burst_frames == 2
            world.send(ro.command(DEVICE, "capture-test", "c1"), retain=False)
            assert wait_until(lambda: world.events(DEVICE, "command."))
            assert agent.capture.wait_idle(10)
        finally:
            agent.stop()
        (applied,) = world.events(DEVICE, "config.")
        assert applied["code"] == "config.applied" and applied["version"] == 2
        (done,) = world.events(DEVICE, "command.")
        assert done["code"] == "command.done" and done["result"] == "triggered"
        conn = open_readonly(Path(settings.storage.data_dir) / DB_NAME)
        try:
            sources = [r[0] for r in conn.execute("SELECT trigger_source FROM media")]
        finally:
            conn.close()
        assert sources == ["test", "test"], "one test burst, of the burst size the cloud set"


def test_the_worker_serves_through_the_guard_and_the_heartbeat_names_its_pack(tmp_path, broker):
    with ota_world(tmp_path, broker) as world:
        agent = Agent(agent_settings(world, broker))
        agent.start()
        try:
            assert agent.vision is not None and agent.ota is not None
            serving = agent.vision.engine
            assert isinstance(serving, EngineGuard) and serving is agent.ota.guard
            assert serving.classified_by == f"{PACK_NAME}@1.0.0"
            assert agent.uplink.heartbeat.collect().model_version == f"{PACK_NAME}@1.0.0"
        finally:
            agent.stop()


def test_a_restart_command_stops_the_agent_for_systemd_to_start_again(tmp_path, broker):
    with ota_world(tmp_path, broker) as world:
        agent = Agent(agent_settings(world, broker))
        agent.start()
        try:
            # A command is not retained: it reaches a trap whose session the broker knows.
            assert wait_until(lambda: agent.uplink.transport.is_connected)
            world.send(ro.command(DEVICE, "restart-agent", "r1"), retain=False)
            assert wait_until(lambda: world.events(DEVICE, "command."))
        finally:
            agent.stop()
        (done,) = world.events(DEVICE, "command.")
        assert done["code"] == "command.done" and done["name"] == "restart-agent"
        assert agent.restart_requested
