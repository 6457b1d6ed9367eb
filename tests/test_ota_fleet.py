"""Fleet rollout: canary first, the rest after the canary reported success; status per device."""

from __future__ import annotations

import threading

from cloud_stub.cli import main as cloud_main
from cloud_stub.models import rollout as ro
from cloud_stub.models.keys import new_keypair
from tests.support.uplink import wait_until
from tests.test_ota_signing import PACK_NAME, ota_world, signed_pack

NEW = f"{PACK_NAME}@1.1.0"


def test_a_canary_of_one_goes_first_then_the_rest_and_status_shows_each_device(
    tmp_path, broker, capsys
):
    with ota_world(tmp_path, broker) as world:
        traps = [world.add_device(f"trap-{n}", trial_inferences=0) for n in (1, 2, 3)]
        ro.set_group(world.root, "north", ["trap-1", "trap-2", "trap-3"])
        pack = signed_pack(tmp_path / "p", "1.1.0", world.key)
        published = []

        def run() -> None:
            targets = ro.group_members(world.root, "north")
            published.append(world.publish(pack, *targets, canary=1))

        rollout = threading.Thread(target=run)
        rollout.start()
        # While the canary installs, nobody else has been offered the pack.
        wait_until(lambda: "model.verify.ok" in world.codes("trap-1"))
        offered_early = {d for d in ("trap-2", "trap-3") if world.codes(d)}
        rollout.join(60)
        assert published and published[0]["phase"] == "published"
        assert offered_early == set()
        for trap in ("trap-1", "trap-2", "trap-3"):
            # "confirmed" below needs the trial report, the last to reach the cloud.
            world.wait_for_code(trap, "model.trial.ok", "model.verify.failed")
        assert [t.serving for t in traps] == [NEW, NEW, NEW]
        # The canary switched before the others were even offered the pack.
        canary_done = [r["at"] for r in world.reports("trap-1") if r["code"] == "model.switch.ok"]
        others_first = [world.reports(t)[0]["at"] for t in ("trap-2", "trap-3")]
        assert all(canary_done[0] <= at for at in others_first)

        capsys.readouterr()
        assert cloud_main(["model", "status", "--root", str(world.root)]) == 0
        table = capsys.readouterr().out
        for trap in ("trap-1 (canary)", "trap-2", "trap-3"):
            line = next(line for line in table.splitlines() if f" {trap} " in line)
            assert "confirmed" in line and NEW in line


def test_a_failing_canary_halts_the_rollout_and_the_rest_never_see_the_pack(
    tmp_path, broker, capsys
):
    with ota_world(tmp_path, broker) as world:
        # The canary does not trust the fleet key, so it refuses the pack.
        _, other_key = new_keypair(tmp_path / "elsewhere")
        world.add_device("trap-1", trust=[other_key])
        world.add_device("trap-2")
        record = world.publish(
            signed_pack(tmp_path / "p", "1.1.0", world.key), "trap-1", "trap-2", canary=1
        )
        assert record["phase"].startswith("halted")
        assert "rejected" in record["phase"]
        assert world.devices["trap-2"].serving == f"{PACK_NAME}@1.0.0"
        assert world.codes("trap-2") == []
        rows = {r["device"]: r["outcome"] for r in ro.status(world.root)}
        assert rows == {"trap-1": "rejected", "trap-2": "not_published"}
        assert cloud_main(["model", "status", "--root", str(world.root), "--json"]) == 0
        assert '"outcome": "not_published"' in capsys.readouterr().out


def test_the_demo_update_the_default_pack_resigned_as_a_new_version_installs(tmp_path, broker):
    from cloud_stub.models.signing import resign_default_pack
    from device.config import DEFAULT_PACK_DIR

    pack, pub = resign_default_pack("1.0.1", tmp_path / "demo")
    assert not list(pack.glob("*.key"))  # the private key stays beside, never inside
    with ota_world(tmp_path, broker) as world:
        trap = world.add_device(
            "trap-demo", factory=DEFAULT_PACK_DIR, trust=[pub], trial_inferences=0
        )
        assert trap.serving == "efficientnet-lite0-imagenet@1.0.0"
        world.publish(pack, "trap-demo")
        world.wait_for_code("trap-demo", "model.switch.ok", "model.verify.failed")
        assert trap.serving == "efficientnet-lite0-imagenet@1.0.1"
