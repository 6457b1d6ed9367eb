"""Heads roll out like any pack: ``camtrap-cloud model sign`` signs one, ``model publish`` stages
and offers it, canary first; traps serving its backbone install it and report
``backbone@v+head@v``; a canary that refuses it (another backbone) halts the rollout, and
publishing warns beforehand about each trap whose heartbeat names another backbone.

Real mosquitto, real ingest, real pack server, real OTA services on tiny real TFLite packs.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cloud_stub.cli import main as cloud_main
from cloud_stub.models import rollout as ro
from device.contracts.head import HeadWeights
from device.contracts.pack import write_pack
from device.protocol import Telemetry
from tests.support.broker import INGEST_USER
from tests.support.uplink import query, wait_until
from tests.support.world import jpeg_bytes
from tests.test_ota_signing import ota_world

pytestmark = pytest.mark.timeout(180)

MODELS = Path(__file__).parent / "data" / "models"
BACKBONE_LABELS = ["fox", "deer", "person", "rock"]
EMBEDDING = 8  # the tiny_embedding_* models' feature size
HEAD_CLASSES = [
    # (speciesnet taxonomy fields, common name, kind)
    (";;;;", "blank", "blank"),
    ("mammalia;carnivora;felidae;felis;catus", "domestic cat", "animal"),
    ("mammalia;carnivora;canidae;vulpes;vulpes", "red fox", "animal"),
]


def backbone_pack(out: Path, name: str = "tiny-backbone", model: str = "tiny_embedding_fp") -> Path:
    """A full tiny pack whose model also outputs an 8-value embedding: what a head needs."""
    files = {
        "model.tflite": (MODELS / f"{model}.tflite").read_bytes(),
        "labels.txt": ("\n".join(BACKBONE_LABELS) + "\n").encode(),
        "golden/scene.jpg": jpeg_bytes(64, 64, seed=7),
    }
    manifest = {
        "name": name,
        "version": "1.0.0",
        "min_agent_version": "0.1.0",
        "model": {
            "file": "model.tflite",
            "input": {"width": 32, "height": 32, "channels": 3, "color": "RGB"},
            "preprocess": {"resize": "squash", "mean": [127.0] * 3, "std": [128.0] * 3},
            "output": "probabilities",
            "embedding": {"size": EMBEDDING},
        },
        "labels": {"file": "labels.txt", "format": "plain"},
        "golden": [{"file": "golden/scene.jpg", "expect_top": BACKBONE_LABELS, "top_k": 4}],
    }
    return write_pack(out, manifest, files)


def backbone_ref(pack: Path) -> dict[str, Any]:
    manifest = json.loads((pack / "manifest.json").read_text())
    return {
        "name": manifest["name"],
        "version": manifest["version"],
        "sha256": manifest["files"]["model.tflite"]["sha256"],
        "embedding_size": EMBEDDING,
    }


def head_pack(out: Path, backbone: dict[str, Any], version: str = "1.0.0") -> Path:
    """An unsigned int8 head of three classes over ``backbone`` (random weights: the golden
    image expects any class in the top 3, so the self-test passes whatever it scores)."""
    rng = np.random.default_rng(5)
    weights = HeadWeights.fit_float(rng.normal(0, 1, (len(HEAD_CLASSES), EMBEDDING)), np.zeros(3))
    labels = "".join(
        f"{uuid.uuid5(uuid.NAMESPACE_URL, 'camtrap-test/' + common)};{taxonomy};{common}\n"
        for taxonomy, common, _ in HEAD_CLASSES
    )
    files = {
        "head.npz": weights.to_bytes(),
        "labels.txt": labels.encode(),
        "golden/scene.jpg": jpeg_bytes(64, 64, seed=8),
    }
    manifest = {
        "kind": "head",
        "name": "site-head",
        "version": version,
        "min_agent_version": "0.1.0",
        "backbone": backbone,
        "head": {"file": "head.npz", "weights": "int8", "kinds": [k for *_, k in HEAD_CLASSES]},
        "labels": {"file": "labels.txt", "format": "speciesnet"},
        "thresholds": {"species": 0.65, "rollup": 0.65, "blank": 0.95, "animal": 0.2},
        "golden": [
            {
                "file": "golden/scene.jpg",
                "expect_top": [common for _, common, _ in HEAD_CLASSES],
                "top_k": 3,
            }
        ],
    }
    return write_pack(out, manifest, files)


def sign(pack: Path, key: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """``camtrap-cloud model sign`` on a head, as an operator runs it."""
    capsys.readouterr()
    assert cloud_main(["model", "sign", str(pack), "--key", str(key), "--expires-days", "7"]) == 0
    return capsys.readouterr().out


def pack_bytes(pack: Path) -> int:
    manifest = json.loads((pack / "manifest.json").read_text())
    return sum(entry["size"] for entry in manifest["files"].values())


def test_a_signed_head_rolls_out_canary_first_and_both_traps_serve_backbone_plus_head(
    tmp_path, broker, capsys
):
    backbone = backbone_pack(tmp_path / "backbone")
    head = head_pack(tmp_path / "head", backbone_ref(backbone))
    with ota_world(tmp_path, broker) as world:
        traps = [
            world.add_device(name, factory=backbone, trial_inferences=0)
            for name in ("trap-1", "trap-2")
        ]
        assert [t.serving for t in traps] == ["tiny-backbone@1.0.0"] * 2
        said = sign(head, world.key, capsys)
        assert said.startswith("signed site-head@1.0.0 with key")
        record = world.publish(head, "trap-1", "trap-2", canary=1)
        assert record["phase"] == "published" and record["warnings"] == []
        for trap in ("trap-1", "trap-2"):
            world.wait_for_code(trap, "model.switch.ok", "model.verify.failed")
        assert [t.serving for t in traps] == ["tiny-backbone@1.0.0+site-head@1.0.0"] * 2
        # The canary switched before the other trap was offered the head.
        canary_done = next(
            r["at"] for r in world.reports("trap-1") if r["code"] == "model.switch.ok"
        )
        assert canary_done <= world.reports("trap-2")[0]["at"]
        outcomes = {r["device"]: r["outcome"] for r in ro.status(world.root)}
        assert set(outcomes.values()) <= set(ro.SUCCESS), outcomes
        # Only the head travelled: its files, once per trap, and nothing of the backbone.
        fetched = {path for path, _, status in world.server.requests if status in (200, 206)}
        assert fetched and all(p.startswith("/packs/site-head@1.0.0/") for p in fetched)
        assert world.server.bytes_sent("site-head", "1.0.0") == 2 * pack_bytes(head)


def test_a_canary_refusing_a_head_of_another_backbone_halts_and_publish_warned_first(
    tmp_path, broker, capsys
):
    ours = backbone_pack(tmp_path / "ours")
    # Fitted on another model file: the traps' backbone sha256 is not the one it names.
    theirs = backbone_pack(tmp_path / "theirs", name="other-backbone", model="tiny_embedding_q")
    assert backbone_ref(theirs)["sha256"] != backbone_ref(ours)["sha256"]
    head = head_pack(tmp_path / "head", backbone_ref(theirs))
    with ota_world(tmp_path, broker) as world:
        trap1 = world.add_device("trap-1", factory=ours, trial_inferences=0)
        world.add_device("trap-2", factory=ours, trial_inferences=0)
        # trap-1's heartbeat reaches the cloud (trap-2 has not reported yet).
        trap1.link.send(
            Telemetry(
                device_id="trap-1",
                item_id="telemetry:trap-1:1",
                sent_at="2026-06-01T12:00:00+00:00",
                model_version=trap1.serving,
                agent_version="0.1.0",
            )
        )
        assert wait_until(lambda: query(world.root, "SELECT count(*) FROM telemetry") == [(1,)])
        sign(head, world.key, capsys)
        cert, key = broker.client_cert(INGEST_USER)
        code = cloud_main(
            [
                "model",
                "publish",
                str(head),
                "--to",
                "trap-1",
                "--to",
                "trap-2",
                "--canary",
                "1",
                "--root",
                str(world.root),
                "--base-url",
                world.server.url,
                "--mqtt-host",
                "127.0.0.1",
                "--mqtt-port",
                str(broker.port),
                "--ca",
                str(broker.ca_file),
                "--cert",
                str(cert),
                "--key",
                str(key),
                "--wait-timeout",
                "60",
            ]
        )
        out, err = capsys.readouterr()
        assert code == 1  # halted
        warnings = [line for line in err.splitlines() if "warning:" in line]
        assert warnings == [
            "camtrap-cloud model publish: warning: trap-1 serves tiny-backbone@1.0.0, but head"
            " site-head@1.0.0 needs backbone other-backbone@1.0.0"
            f" (sha256 {backbone_ref(theirs)['sha256'][:12]}): the trap will refuse it unless"
            " its model file is that one"
        ]
        rows = {r["device"]: r for r in ro.status(world.root)}
        assert rows["trap-1"]["outcome"] == "rejected"
        assert rows["trap-2"]["outcome"] == "not_published"
        assert "halted" in rows["trap-1"]["phase"]
        assert world.codes("trap-2") == []
        # Refused before downloading: the pack server was never asked for a file.
        assert world.server.requests == []
        assert world.devices["trap-1"].serving == "tiny-backbone@1.0.0"
        assert world.devices["trap-2"].serving == "tiny-backbone@1.0.0"
        assert "trap-1 (canary)" in out and "rejected" in out


def test_a_head_whose_provenance_would_not_fit_an_observation_is_not_signed(tmp_path, capsys):
    from cloud_stub.models.keys import new_keypair

    key, _ = new_keypair(tmp_path / "keys")
    backbone = {**backbone_ref(backbone_pack(tmp_path / "b")), "name": "b" * 240}
    head = head_pack(tmp_path / "head", backbone)
    before = (head / "manifest.json").read_text()
    assert cloud_main(["model", "sign", str(head), "--key", str(key), "--expires-days", "7"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("camtrap-cloud model sign: ") and "at most 255" in err
    assert len(err.splitlines()) == 1
    # Left as it was: unsigned, every file in place.
    assert json.loads((head / "manifest.json").read_text())["signature"] is None
    assert json.loads(before)["files"] == json.loads((head / "manifest.json").read_text())["files"]
