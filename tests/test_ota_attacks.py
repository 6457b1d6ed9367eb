"""Model updates against a real mosquitto, a real ingest and the stub's real HTTP server.

Every fault and attack must leave the old model serving and a report at ingest.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

from cloud_stub.models import rollout as ro
from cloud_stub.models.keys import new_keypair
from device.ota.layout import Layout, active_pack_path, load_active_engine
from device.vision.engine import EventFrame
from tests.support.world import write_jpegs
from tests.test_ota_signing import (
    LABELS,
    PACK_NAME,
    make_pack,
    ota_world,
    private_key,
    resign_manifest,
    signed_pack,
)

OLD = f"{PACK_NAME}@1.0.0"


def served_file(world, version: str, name: str):
    return world.root / "packs" / f"{PACK_NAME}@{version}" / name


def test_a_signed_newer_pack_is_verified_downloaded_self_tested_and_switched_to(tmp_path, broker):
    with ota_world(tmp_path, broker) as world:
        trap = world.add_device("trap-a", trial_inferences=0)
        assert trap.serving == OLD
        world.publish(signed_pack(tmp_path / "p110", "1.1.0", world.key), "trap-a")
        # The trial report is the last one; it can reach the cloud after the device is idle.
        codes = world.wait_for_code("trap-a", "model.trial.ok", "model.verify.failed")
        assert codes == [
            "model.verify.ok",
            "model.download.ok",
            "model.stage.ok",
            "model.selftest.ok",
            "model.switch.ok",
            "model.trial.ok",
        ]
        assert trap.serving == f"{PACK_NAME}@1.1.0"
        layout = Layout.of(trap.settings)
        assert os.readlink(layout.current) == f"packs/{PACK_NAME}@1.1.0"
        assert active_pack_path(trap.settings) == layout.pack_dir(PACK_NAME, "1.1.0").resolve()
        # What the agent would load after a restart is the new pack, and it verifies.
        assert load_active_engine(trap.settings).classified_by == f"{PACK_NAME}@1.1.0"
        status = ro.status(world.root)
        assert [(r["device"], r["outcome"]) for r in status] == [("trap-a", "confirmed")]


def test_a_pack_with_a_flipped_byte_is_refused_after_download(tmp_path, broker):
    with ota_world(tmp_path, broker) as world:
        trap = world.add_device("trap-a")
        pack = signed_pack(tmp_path / "p", "1.1.0", world.key)
        ro.stage_pack(world.root, pack)
        model = served_file(world, "1.1.0", "model.tflite")
        data = bytearray(model.read_bytes())
        data[len(data) // 2] ^= 0x01
        model.write_bytes(bytes(data))
        world.publish(pack, "trap-a")
        codes = world.wait_for_code("trap-a", "model.download.failed", "model.switch.ok")
        assert codes[-1] == "model.download.failed"
        assert "sha256 mismatch" in world.reports("trap-a")[-1]["detail"]
        assert trap.serving == OLD
        assert not Layout.of(trap.settings).current.exists()


def test_a_manifest_signed_with_the_wrong_key_downloads_nothing(tmp_path, broker):
    with ota_world(tmp_path, broker) as world:
        trap = world.add_device("trap-a")
        rogue, _ = new_keypair(tmp_path / "rogue")
        world.publish(signed_pack(tmp_path / "p", "1.1.0", rogue), "trap-a")
        codes = world.wait_for_code("trap-a", "model.verify.failed", "model.switch.ok")
        assert codes == ["model.verify.failed"]
        assert "does not trust" in world.reports("trap-a")[-1]["detail"]
        assert world.server.requests == []  # the signature is checked before any download
        assert trap.serving == OLD


def test_a_tampered_signed_manifest_is_refused(tmp_path, broker):
    with ota_world(tmp_path, broker) as world:
        trap = world.add_device("trap-a")
        pack = signed_pack(tmp_path / "p", "1.1.0", world.key)
        manifest = json.loads((pack / "manifest.json").read_text())
        manifest["min_agent_version"] = "0.0.1"  # one field changed after signing
        (pack / "manifest.json").write_text(json.dumps(manifest))
        world.publish(pack, "trap-a")
        assert world.wait_for_code("trap-a", "model.verify.failed") == ["model.verify.failed"]
        assert "does not verify" in world.reports("trap-a")[-1]["detail"]
        assert trap.serving == OLD


def test_a_replayed_older_version_is_refused_even_though_its_signature_is_good(tmp_path, broker):
    with ota_world(tmp_path, broker) as world:
        trap = world.add_device("trap-a", trial_inferences=0)
        older = signed_pack(tmp_path / "p105", "1.0.5", world.key)
        world.publish(signed_pack(tmp_path / "p110", "1.1.0", world.key), "trap-a")
        world.wait_for_code("trap-a", "model.switch.ok")
        assert trap.serving == f"{PACK_NAME}@1.1.0"
        world.publish(older, "trap-a")
        codes = world.wait_for_code("trap-a", "model.verify.failed")
        assert codes[-1] == "model.verify.failed"
        assert "anti-rollback" in world.reports("trap-a")[-1]["detail"]
        assert trap.serving == f"{PACK_NAME}@1.1.0"
        # The floor is on disk: a fresh service (an agent restart) refuses it as well.
        state = json.loads(Layout.of(trap.settings).state_path.read_text())
        assert state["floors"] == {PACK_NAME: "1.1.0"}


def test_an_expired_manifest_is_refused(tmp_path, broker):
    with ota_world(tmp_path, broker) as world:
        trap = world.add_device("trap-a")
        pack = make_pack(tmp_path / "p", "1.1.0")
        past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        resign_manifest(pack, private_key(world.key), expires=past)
        world.publish(pack, "trap-a")
        assert world.wait_for_code("trap-a", "model.verify.failed") == ["model.verify.failed"]
        assert "expired" in world.reports("trap-a")[-1]["detail"]
        assert world.server.requests == []
        assert trap.serving == OLD


def test_a_truncated_file_on_the_server_is_refused(tmp_path, broker):
    with ota_world(tmp_path, broker) as world:
        trap = world.add_device("trap-a")
        pack = signed_pack(tmp_path / "p", "1.1.0", world.key)
        ro.stage_pack(world.root, pack)
        model = served_file(world, "1.1.0", "model.tflite")
        model.write_bytes(model.read_bytes()[:-100])
        world.publish(pack, "trap-a")
        codes = world.wait_for_code("trap-a", "model.download.failed", "model.switch.ok")
        assert codes[-1] == "model.download.failed"
        assert "manifest says" in world.reports("trap-a")[-1]["detail"]
        assert trap.serving == OLD


def test_an_interrupted_download_resumes_with_a_range_request(tmp_path, broker):
    with ota_world(tmp_path, broker, drop_after_bytes=100_000) as world:
        trap = world.add_device("trap-a", trial_inferences=0)
        world.publish(signed_pack(tmp_path / "p", "1.1.0", world.key, pad=400_000), "trap-a")
        codes = world.wait_for_code("trap-a", "model.switch.ok", "model.download.failed")
        assert "model.switch.ok" in codes
        padding = [r for r in world.server.requests if r[0].endswith("/padding.bin")]
        assert padding[0][1] is None and padding[1][1] == "bytes=100000-"
        assert padding[1][2] == 206
        download = [r for r in world.reports("trap-a") if r["code"] == "model.download.ok"]
        assert download[0]["resumed"] >= 1
        assert trap.serving == f"{PACK_NAME}@1.1.0"


def test_a_pack_that_fails_its_self_test_is_discarded_and_not_retried(tmp_path, broker):
    with ota_world(tmp_path, broker) as world:
        trap = world.add_device("trap-a")
        # Expect, as top-1, a label the model does not rank first: a real self-test failure.
        last = _not_top_one(tmp_path)
        pack = signed_pack(tmp_path / "p", "1.1.0", world.key, expect_top=[last], top_k=1)
        world.publish(pack, "trap-a")
        codes = world.wait_for_code("trap-a", "model.selftest.failed", "model.switch.ok")
        assert codes[-1] == "model.selftest.failed"
        assert "self-test failed" in world.reports("trap-a")[-1]["detail"]
        assert trap.serving == OLD
        layout = Layout.of(trap.settings)
        assert not layout.pack_dir(PACK_NAME, "1.1.0").exists()
        # The retained offer comes back on every reconnect; it is not tried again.
        trap.link.client.reconnect()
        trap.service.wait_idle(10)
        assert world.codes("trap-a").count("model.selftest.failed") == 1


def test_a_pack_that_fails_on_real_events_is_rolled_back(tmp_path, broker):
    from device.vision.engine import VisionEngine

    class Crashes(VisionEngine):
        def classify_event(self, frames):
            raise RuntimeError("interpreter crashed on a real frame")

    def loader(pack, vision, location):
        engine = VisionEngine.load(pack, vision, location)
        if engine.pack.version == "1.1.0":
            engine.__class__ = Crashes  # the new model passes its goldens but fails in use
        return engine

    with ota_world(tmp_path, broker) as world:
        trap = world.add_device("trap-a", trial_inferences=3)
        trap.service.load_engine = loader
        trap.service.updater.load_engine = loader
        world.publish(signed_pack(tmp_path / "p", "1.1.0", world.key), "trap-a")
        world.wait_for_code("trap-a", "model.switch.ok")
        assert trap.serving == f"{PACK_NAME}@1.1.0"
        jpeg = write_jpegs(tmp_path / "frames", 1)[0]
        verdict = trap.service.guard.classify_event([EventFrame("m1", jpeg, None)])
        # The event was still classified, by the previous model.
        assert verdict.observations[0].classified_by == OLD
        codes = world.wait_for_code("trap-a", "model.rollback.ok")
        assert codes[-3:] == ["model.switch.ok", "model.trial.failed", "model.rollback.ok"]
        assert trap.serving == OLD
        assert not Layout.of(trap.settings).current.exists()  # back to the configured pack
        assert load_active_engine(trap.settings).classified_by == OLD
        assert ro.status(world.root)[0]["outcome"] == "rolled_back"


def test_a_restart_during_the_trial_puts_the_new_pack_on_probation_again(tmp_path, broker):
    from device.ota.engine_guard import EngineGuard
    from device.ota.reports import TransportReporter
    from device.ota.service import OtaService

    with ota_world(tmp_path, broker) as world:
        trap = world.add_device("trap-a", trial_inferences=2)
        world.publish(signed_pack(tmp_path / "p", "1.1.0", world.key), "trap-a")
        world.wait_for_code("trap-a", "model.switch.ok")
        assert trap.service.guard.in_trial
        trap.service.stop()
        # The agent starts again: it loads `current`, and the trial resumes with a fallback.
        guard = EngineGuard(load_active_engine(trap.settings))
        restarted = OtaService(trap.settings, TransportReporter(trap.link), guard=guard).start()
        trap.service = restarted
        assert guard.engine.classified_by == f"{PACK_NAME}@1.1.0" and guard.in_trial
        jpeg = write_jpegs(tmp_path / "frames", 1)[0]
        for n in range(2):
            guard.classify_event([EventFrame(f"m{n}", jpeg, None)])
        codes = world.wait_for_code("trap-a", "model.trial.ok")
        assert codes[-1] == "model.trial.ok" and not guard.in_trial
        assert ro.status(world.root)[0]["outcome"] == "confirmed"


def _not_top_one(tmp_path) -> str:
    from device.config import LocationSection, VisionSection
    from device.vision.engine import VisionEngine
    from device.vision.pack import PackError

    for label in LABELS:
        probe = make_pack(tmp_path / f"probe-{label}", "9.9.9", expect_top=[label], top_k=1)
        try:
            VisionEngine.load(probe, VisionSection(), LocationSection())
        except PackError:
            return label
    raise AssertionError("the model ranks every label first?")
