"""``camtrap-cloud train`` on the project's own synthetic scenes: a head fitted on one seed's
labelled bursts beats the ImageNet-sum baseline on events it never saw, and ships as a small
head pack that reads back, signs and self-tests like any pack."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from typing import Any

import numpy as np
import pytest

from cloud_stub.cli import main as cloud_main
from cloud_stub.models.keys import new_keypair
from cloud_stub.training.embeddings import Embedder
from device.contracts.calibration import Calibration
from device.contracts.pack import DEFAULT_PACK_DIR, read_pack
from device.contracts.signing import key_id, load_public_key, verify_manifest
from tests.support.training_world import labelled_folder, train

BURSTS, SEED = 200, 3


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("synthetic")
    labels = labelled_folder(base / "scenes", BURSTS, SEED)
    out = base / "head"
    code, stdout, stderr = train(
        "--images", base / "scenes", "--labels", labels, "--out", out,
        "--cache", base / "cache", "--json",
    )  # fmt: skip
    assert code == 0, stderr
    return {"base": base, "labels": labels, "out": out, "report": json.loads(stdout)}


def test_a_head_trained_on_synthetic_scenes_beats_the_imagenet_sum_baseline(world):
    blank = world["report"]["blank_filter"]
    head, baseline = blank["head"]["auc"], blank["serving"]["auc"]
    print(
        f"synthetic held-out events: head AUC {head:.4f}, ImageNet-sum baseline AUC "
        f"{baseline:.4f} ({blank['head']['n_blank']} blank, "
        f"{blank['head']['n_not_blank']} not blank)"
    )
    assert blank["measured_on"] == "test part"
    assert world["report"]["split"]["by"] == "event"
    assert world["report"]["serving"] == "efficientnet-lite0-imagenet@1.0.0"
    assert head > baseline


def test_the_head_pack_reads_back_as_a_small_head_over_the_default_backbone(world):
    pack = read_pack(world["out"])
    backbone = read_pack(DEFAULT_PACK_DIR)
    assert pack.kind == "head"
    assert pack.manifest.backbone.sha256 == backbone.manifest.model_sha256
    assert pack.manifest.classified_by == "efficientnet-lite0-imagenet@1.0.0+head-scenes@1.0.0"
    assert [t.common_name for t in pack.taxa] == ["blank", "domestic cat", "domestic horse"]
    assert [t.kind for t in pack.taxa] == ["blank", "animal", "animal"]
    assert pack.head is not None and pack.head.storage == "int8"
    assert pack.head.embedding_size == 1280
    size = sum(p.stat().st_size for p in world["out"].rglob("*") if p.is_file())
    print(f"head pack: {size} bytes")
    assert world["report"]["pack"]["bytes"] == size < 100_000
    assert pack.manifest.signature is None  # signing is the next step


def test_the_calibration_table_names_the_validation_part_it_was_measured_on(world):
    pack = read_pack(world["out"])
    calibration = Calibration.from_json(pack.files["calibration.json"])
    measured = calibration.measured_on
    assert measured.level == "event"
    assert measured.name.startswith("validation part of folder")
    validation = world["report"]["split"]["groups"]["validation"]
    assert measured.n_blank + measured.n_not_blank == validation


def test_the_golden_images_pass_the_path_the_trap_self_test_takes(world):
    pack = read_pack(world["out"])
    embedder = Embedder(read_pack(DEFAULT_PACK_DIR))
    names = [t.common_name for t in pack.taxa]
    assert 1 <= len(pack.manifest.golden) <= 2
    for golden in pack.manifest.golden:
        probabilities = pack.head.apply(embedder.run_golden(pack.files[golden.file]).embedding)
        top = [names[i] for i in np.argsort(-probabilities)[: golden.top_k]]
        assert golden.expect_top[0] in top
        assert golden.top_k < len(names)  # a self-test that can fail


def test_the_report_is_written_beside_the_pack_not_inside_it(world):
    report_dir = world["out"].with_name("head.report")
    saved = json.loads((report_dir / "report.json").read_text())
    assert saved["blank_filter"] == world["report"]["blank_filter"]
    assert (report_dir / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not any(p.name.endswith((".png", "report.json")) for p in world["out"].rglob("*"))


def test_a_second_run_embeds_nothing_and_fits_the_same_head(world):
    again = world["base"] / "again"
    code, stdout, stderr = train(
        "--images", world["base"] / "scenes", "--labels", world["labels"], "--out", again,
        "--cache", world["base"] / "cache", "--name", "head-scenes", "--json",
    )  # fmt: skip
    assert code == 0, stderr
    images = json.loads(stdout)["images"]
    assert images["embedded_now"] == 0
    assert images["from_cache"] == images["labelled"] == BURSTS * 3
    assert (again / "head.npz").read_bytes() == (world["out"] / "head.npz").read_bytes()


def test_model_sign_signs_a_head_pack(world, tmp_path):
    signed = tmp_path / "signed"
    shutil.copytree(world["out"], signed)
    key, pub = new_keypair(tmp_path / "keys")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cloud_main(["model", "sign", str(signed), "--key", str(key), "--expires-days", "30"])
    assert code == 0, err.getvalue()
    document = json.loads((signed / "manifest.json").read_text())
    public = load_public_key(pub)
    assert verify_manifest(document, {key_id(public): public}) == key_id(public)
    assert read_pack(signed).kind == "head"
