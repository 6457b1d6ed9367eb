"""A deployment calibration pushed by remote config, over a real mosquitto: applied to the
serving engine without a restart, refused whole when malformed, and kept across a restart."""

from __future__ import annotations

from cloud_stub.models import rollout as ro
from device.config import Settings
from device.ota.agent_hooks import apply_persisted_config
from tests.support.calibration import a_table, table_document
from tests.test_ota_control import _wait_events
from tests.test_ota_signing import ota_world


def test_a_pushed_calibration_sets_the_serving_threshold_and_survives_a_restart(tmp_path, broker):
    table = a_table((0.61, 0.72, 0.83, 0.94), name="the site's own photos")
    with ota_world(tmp_path, broker) as world:
        trap = world.add_device("trap-a")
        before = trap.service.guard.engine
        assert before.operating_point.source == "the pack manifest"
        world.send(
            ro.desired_config("trap-a", 1, {"vision": {"calibration": table_document(table)}}),
            retain=True,
        )
        (applied,) = _wait_events(world, "trap-a", "config.", 1)
        assert applied["code"] == "config.applied"
        assert applied["changed"] == ["vision.calibration"] and applied["restart_required"] == []
        after = trap.service.guard.engine
        assert after is not before
        assert after.thresholds.blank == 0.83  # the row for the default target, 0.98
        assert after.operating_point.source == "vision.calibration (remote config)"
        assert "the site's own photos" in after.operating_point.describe()

        # The next push moves the target: the same table, another row.
        world.send(ro.desired_config("trap-a", 2, {"vision": {"target_recall": 0.9}}))
        _wait_events(world, "trap-a", "config.", 2)
        assert trap.service.guard.engine.thresholds.blank == 0.61

        # A malformed table is refused in one line, and the old table stays in force.
        broken = table_document(table)
        broken["points"][2]["threshold"] = 0.5  # below the 0.95 row: not made by the rule
        world.send(ro.desired_config("trap-a", 3, {"vision": {"calibration": broken}}))
        reports = _wait_events(world, "trap-a", "config.", 3)
        assert reports[-1]["code"] == "config.rejected"
        assert "vision.calibration" in reports[-1]["detail"]
        assert "below that of a lower target" in reports[-1]["detail"]
        assert "\n" not in reports[-1]["detail"]
        assert trap.settings.vision.calibration == table
        assert trap.service.guard.engine.thresholds.blank == 0.61

        # A restart reads the file's settings, then re-applies what the cloud pushed.
        restarted = Settings(**trap.settings.model_dump(exclude={"vision"}))
        restarted.vision.pack = trap.settings.vision.pack
        assert restarted.vision.calibration is None
        assert apply_persisted_config(restarted) == 2
        assert restarted.vision.calibration == table and restarted.vision.target_recall == 0.9
