"""Remote configuration and commands over a real mosquitto, with reports read back at ingest."""

from __future__ import annotations

import json

from cloud_stub.models import rollout as ro
from device.ota import remote_config
from device.ota.agent_hooks import apply_persisted_config
from device.ota.layout import Layout
from device.ota.remote_commands import AgentCallbacks
from device.protocol import down_topic
from tests.support.uplink import wait_until
from tests.test_ota_signing import ota_world


def _wait_events(world, device: str, prefix: str, count: int) -> list[dict]:
    wait_until(lambda: len(world.events(device, prefix)) >= count)
    world.devices[device].service.wait_idle(10)
    return world.events(device, prefix)


def test_a_valid_desired_config_applies_live_and_reports_its_version(tmp_path, broker):
    with ota_world(tmp_path, broker) as world:
        trap = world.add_device("trap-a")
        values = {"capture": {"burst_frames": 7, "cooldown_s": 1.5}, "pir": {"threshold": 0.7}}
        world.send(ro.desired_config("trap-a", 3, values), retain=True)
        (applied,) = _wait_events(world, "trap-a", "config.", 1)
        assert applied["code"] == "config.applied"
        assert applied["version"] == 3
        assert sorted(applied["changed"]) == [
            "capture.burst_frames",
            "capture.cooldown_s",
            "pir.threshold",
        ]
        assert applied["restart_required"] == ["pir.threshold"]
        # The live settings object changed: the capture loop reads it on every trigger.
        assert trap.settings.capture.burst_frames == 7
        assert trap.service.config_version == 3
        # The retained message again (a reconnect) changes nothing and reports nothing.
        trap.link.client.reconnect()
        trap.service.wait_idle(10)
        assert len(world.events("trap-a", "config.")) == 1
        # After a restart the file's values are read again, then the cloud's are re-applied.
        from device.config import Settings

        restarted = Settings(**trap.settings.model_dump(exclude={"capture", "pir"}))
        assert restarted.capture.burst_frames != 7
        assert apply_persisted_config(restarted) == 3
        assert restarted.capture.burst_frames == 7 and restarted.pir.threshold == 0.7


def test_credentials_trust_keys_and_invalid_values_are_rejected_and_nothing_changes(
    tmp_path, broker
):
    with ota_world(tmp_path, broker) as world:
        trap = world.add_device("trap-a")
        before = trap.settings.model_dump()
        attempts = [
            {"capture": {"burst_frames": 4}, "uplink": {"mqtt": {"host": "evil.example"}}},
            {"ota": {"trusted_keys": ["AAAA"]}},
            {"capture": {"burst_frames": 4, "cooldown_s": -1}},
            {"capture": {"no_such_key": 1}},
            {"device": {"id": "someone-else"}},
        ]
        for version, values in enumerate(attempts, start=1):
            world.send(ro.desired_config("trap-a", version, values), retain=True)
            _wait_events(world, "trap-a", "config.", version)
        reports = world.events("trap-a", "config.")
        assert [r["code"] for r in reports] == ["config.rejected"] * len(attempts)
        assert "uplink.mqtt: not remote-changeable" in reports[0]["detail"]
        assert "ota.trusted_keys: not remote-changeable" in reports[1]["detail"]
        assert "capture.cooldown_s" in reports[2]["detail"]
        assert trap.settings.model_dump() == before
        assert trap.service.config_version == 0
        state_file = Layout.of(trap.settings).state_path
        assert not state_file.exists() or json.loads(state_file.read_text())["config_values"] == {}


def test_only_fields_marked_remote_are_changeable():
    fields = remote_config.remote_fields()
    assert "burst_frames" in fields["capture"] and "interval_s" in fields["telemetry"]
    assert "ota" not in fields and "mqtt" not in fields.get("uplink", set())
    assert "id" not in fields.get("device", set())


def test_known_commands_call_the_agent_and_everything_else_gets_an_error_reply(tmp_path, broker):
    calls: list[str] = []
    callbacks = AgentCallbacks(
        sync_now=lambda: calls.append("sync"),
        capture_test=lambda: calls.append("capture") or "media-123",
        restart_agent=lambda: calls.append("restart"),
    )
    with ota_world(tmp_path, broker) as world:
        world.add_device("trap-a", callbacks=callbacks)
        world.send(ro.command("trap-a", "capture-test", "c1"))
        world.send(ro.command("trap-a", "capture-test", "c1"))  # QoS 1 may repeat: once only
        world.send(ro.command("trap-a", "sync-now", "c2"))
        world.send(ro.command("trap-a", "format-sd-card", "c3"))
        topic = down_topic("trap-a", "command")
        world.publisher.client.publish(topic, b'{"v": 1, "type": "command", "commandID": "c4"}', 1)
        world.publisher.client.publish(topic, b"\x00not json", qos=1).wait_for_publish(5)
        world.send(ro.command("trap-a", "restart-agent", "c5"))
        reports = _wait_events(world, "trap-a", "command.", 6)
        summary = [(r["code"], r.get("command_id"), r.get("name")) for r in reports]
        assert summary == [
            ("command.done", "c1", "capture-test"),
            ("command.done", "c2", "sync-now"),
            ("command.rejected", "c3", "format-sd-card"),
            ("command.rejected", "c4", None),
            ("command.rejected", None, None),
            ("command.done", "c5", "restart-agent"),
        ]
        assert reports[0]["result"] == "media-123"
        assert "unknown command" in reports[2]["detail"]
        assert calls == ["capture", "sync", "restart"]


def test_a_command_without_an_agent_callback_fails_with_a_report(tmp_path, broker):
    with ota_world(tmp_path, broker) as world:
        world.add_device("trap-a", callbacks=AgentCallbacks())
        world.send(ro.command("trap-a", "sync-now", "c1"))
        (report,) = _wait_events(world, "trap-a", "command.", 1)
        assert report["code"] == "command.failed" and "not supported" in report["detail"]


def test_a_changed_vision_threshold_rebuilds_the_serving_engine_without_a_restart(tmp_path, broker):
    with ota_world(tmp_path, broker) as world:
        trap = world.add_device("trap-a")
        before = trap.service.guard.engine
        assert before.thresholds.species != 0.9
        world.send(ro.desired_config("trap-a", 1, {"vision": {"species_threshold": 0.9}}))
        (applied,) = _wait_events(world, "trap-a", "config.", 1)
        assert applied["restart_required"] == []
        after = trap.service.guard.engine
        assert after is not before and after.thresholds.species == 0.9
        assert after.classified_by == before.classified_by
