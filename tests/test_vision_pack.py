"""Model packs: verified before use, refused with one clear line, never harming a serving engine.

Uses the tiny real TFLite models in tests/data/models (see the README there).
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from device.config import LocationSection, VisionSection
from device.vision.engine import VisionEngine
from device.vision.pack import PackError, load_pack, write_pack

MODELS = Path(__file__).parent / "data" / "models"
LABELS = ["leopard", "lion", "person", "rock"]
TAXONOMY = [
    {"label": "leopard", "kind": "animal", "taxonomy": "mammalia;carnivora;felidae;panthera;pardus",
     "scientific_name": "Panthera pardus", "common_name": "leopard", "rank": "species"},
    {"label": "lion", "kind": "animal", "taxonomy": "mammalia;carnivora;felidae;panthera;leo",
     "scientific_name": "Panthera leo", "common_name": "lion", "rank": "species"},
    {"label": "person", "kind": "human", "taxonomy": "", "rank": None},
    {"label": "rock", "kind": "object", "taxonomy": "", "rank": None},
]  # fmt: skip


def tiny_model(kind: str) -> Path:
    """The test model of one input type: float32, uint8, int8 or unsupported."""
    names = sorted(p for p in MODELS.glob("*.tflite"))
    kind = {"unsupported": "int16"}.get(kind, kind)
    if kind == "int8":
        found = [p for p in names if "int8" in p.name and "uint8" not in p.name]
    else:
        found = [p for p in names if kind in p.name]
    assert found, f"no {kind} test model in {MODELS}"
    return found[0]


def make_pack(
    out: Path,
    kind: str = "uint8",
    labels: list[str] = LABELS,
    taxonomy: list | None = TAXONOMY,
    **manifest_extra,
) -> Path:
    files = {
        "model.tflite": tiny_model(kind).read_bytes(),
        "labels.txt": ("\n".join(labels) + "\n").encode(),
    }
    manifest = {
        "name": f"tiny-{kind}",
        "version": "1.2.3",
        "min_agent_version": "0.1.0",
        "model": {
            "file": "model.tflite",
            "preprocess": {"resize": "squash", "mean": [127.5] * 3, "std": [127.5] * 3},
            "output": "probabilities",
        },
        "labels": {"file": "labels.txt", "format": "plain"},
        "thresholds": {"species": 0.65, "rollup": 0.65, "blank": 0.95, "animal": 0.2},
    }
    if taxonomy is not None:
        files["taxonomy.json"] = json.dumps(taxonomy).encode()
        manifest["taxonomy"] = {"file": "taxonomy.json"}
    manifest.update(manifest_extra)
    return write_pack(out, manifest, files)


def vision(**kw) -> VisionSection:
    return VisionSection(**kw)


def photo(path: Path, seed: int = 0, size=(160, 120)) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), np.uint8)).save(path)
    return path


def _rewrite_manifest(pack: Path, change) -> None:
    manifest = json.loads((pack / "manifest.json").read_text())
    change(manifest)
    (pack / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("kind", ["float32", "uint8", "int8"])
def test_a_pack_of_each_supported_tensor_type_loads_and_classifies(tmp_path, kind):
    pack = make_pack(tmp_path / "pack", kind)
    engine = VisionEngine.load(pack, vision(), LocationSection())
    assert engine.classified_by == "tiny-" + kind + "@1.2.3"
    result = engine.classify_image(photo(tmp_path / "a.jpg"))
    assert result.observation_type in ("animal", "human", "blank", "unknown")
    assert 0.0 <= result.blank_score <= 1.0
    top = result.details["top"]
    assert {t["label"] for t in top} <= set(LABELS)
    assert abs(sum(t["score"] for t in top) - 1.0) < 0.05  # dequantised probabilities


def test_a_changed_file_fails_the_checksum(tmp_path):
    pack = make_pack(tmp_path / "pack")
    (pack / "labels.txt").write_text("leopard\nlion\nperson\nrocs\n")  # same size
    with pytest.raises(PackError, match=r"labels.txt: checksum mismatch"):
        load_pack(pack)


def test_a_truncated_model_fails_its_size_check(tmp_path):
    pack = make_pack(tmp_path / "pack")
    data = (pack / "model.tflite").read_bytes()
    (pack / "model.tflite").write_bytes(data[:100])
    with pytest.raises(PackError, match=r"model.tflite: size 100 !="):
        load_pack(pack)


def test_a_corrupt_tflite_with_matching_checksums_is_refused_by_the_runtime(tmp_path):
    (tmp_path / "fake.tflite").write_bytes(b"TFL3" + bytes(range(256)) * 8)
    pack = tmp_path / "pack"
    files = {"model.tflite": (tmp_path / "fake.tflite").read_bytes(), "labels.txt": b"a\nb\n"}
    manifest = {"name": "bad", "version": "1.0", "model": {"file": "model.tflite"},
                "labels": {"file": "labels.txt", "format": "plain"}}  # fmt: skip
    with pytest.raises(PackError, match="not a loadable TFLite model"):
        write_pack(pack, manifest, files)  # written fine, but cannot load as an engine
        VisionEngine.load(pack, vision(), LocationSection())


def test_labels_count_must_match_the_model_output(tmp_path):
    pack = make_pack(tmp_path / "pack", labels=LABELS[:3], taxonomy=TAXONOMY[:3])
    with pytest.raises(PackError, match="labels file has 3 labels but the model outputs 4"):
        VisionEngine.load(pack, vision(), LocationSection())


def test_an_unsupported_tensor_type_is_named(tmp_path):
    pack = make_pack(tmp_path / "pack", "unsupported")
    with pytest.raises(PackError, match=r"unsupported (input|output) tensor type"):
        VisionEngine.load(pack, vision(), LocationSection())


def test_files_used_but_not_checksummed_are_refused(tmp_path):
    pack = make_pack(tmp_path / "pack")
    (pack / "geofence.json").write_text("{}")
    _rewrite_manifest(pack, lambda m: m.update(geofence={"file": "geofence.json"}))
    with pytest.raises(PackError, match=r"geofence\.json is used but has no checksum"):
        load_pack(pack)


def test_newer_agent_requirement_and_expiry_are_enforced(tmp_path):
    pack = make_pack(tmp_path / "a", min_agent_version="99.0.0")
    with pytest.raises(PackError, match=r"needs agent 99\.0\.0 or newer"):
        VisionEngine.load(pack, vision(), LocationSection())
    pack = make_pack(tmp_path / "b")
    _rewrite_manifest(pack, lambda m: m.update(expires="2001-01-01T00:00:00+00:00"))
    with pytest.raises(PackError, match="expired"):
        load_pack(pack)


def test_a_failed_load_leaves_the_serving_engine_untouched(tmp_path):
    good = VisionEngine.load(make_pack(tmp_path / "good"), vision(), LocationSection())
    image = photo(tmp_path / "x.jpg", seed=3)
    before = good.classify_image(image)
    bad = make_pack(tmp_path / "bad", "int8")
    (bad / "model.tflite").write_bytes(b"garbage")
    with pytest.raises(PackError):
        VisionEngine.load(bad, vision(), LocationSection())
    after = good.classify_image(image)
    assert after.details["top"] == before.details["top"]
    assert good.classified_by == "tiny-uint8@1.2.3"


def test_golden_images_are_checked_when_a_pack_loads(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (40, 40), (10, 200, 30)).save(buf, "JPEG")
    probe = make_pack(tmp_path / "probe")
    engine = VisionEngine.load(probe, vision(), LocationSection())
    Image.open(buf).save(tmp_path / "g.jpg")
    top1 = engine.classify_image(tmp_path / "g.jpg").details["top"]
    never = [t["label"] for t in top1][-1]  # the least likely of the four labels

    def with_golden(out: Path, expect: str, top_k: int) -> Path:
        files = {"golden/g.jpg": buf.getvalue()}
        pack = make_pack(out)
        for name, data in files.items():
            (pack / name).parent.mkdir(exist_ok=True)
            (pack / name).write_bytes(data)
        _rewrite_manifest(pack, lambda m: (
            m["files"].update({"golden/g.jpg": {"sha256": __import__("hashlib").sha256(
                buf.getvalue()).hexdigest()}}),
            m.update(golden=[{"file": "golden/g.jpg", "expect_top": [expect], "top_k": top_k}]),
        ))  # fmt: skip
        return pack

    VisionEngine.load(
        with_golden(tmp_path / "ok", top1[0]["label"], 1), vision(), LocationSection()
    )
    with pytest.raises(PackError, match=r"self-test failed: golden/g.jpg: expected"):
        VisionEngine.load(with_golden(tmp_path / "no", never, 1), vision(), LocationSection())
    # and the check can be switched off
    VisionEngine.load(with_golden(tmp_path / "off", never, 1), vision(self_test=False),
                      LocationSection())  # fmt: skip


def _tar(pack: Path, out: Path, prefix: str = "") -> Path:
    with tarfile.open(out, "w:gz" if out.name.endswith(".gz") else "w") as tar:
        for f in sorted(pack.rglob("*")):
            if f.is_file():
                tar.add(f, arcname=prefix + str(f.relative_to(pack)))
    return out


def test_a_tar_pack_loads_with_or_without_a_top_folder(tmp_path):
    pack = make_pack(tmp_path / "pack")
    for prefix in ("", "tiny/"):
        tar = _tar(pack, tmp_path / f"p{len(prefix)}.tar.gz", prefix)
        engine = VisionEngine.load(tar, vision(), LocationSection())
        assert engine.classified_by == "tiny-uint8@1.2.3"


def test_tars_with_escaping_paths_or_links_are_refused(tmp_path):
    pack = make_pack(tmp_path / "pack")
    evil = tmp_path / "evil.tar"
    _tar(pack, evil)
    with tarfile.open(evil, "a") as tar:
        info = tarfile.TarInfo("../outside.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(PackError, match="unsafe file name"):
        load_pack(evil)
    linked = tmp_path / "link.tar"
    _tar(pack, linked)
    with tarfile.open(linked, "a") as tar:
        info = tarfile.TarInfo("passwd")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(PackError, match="links and special files are not allowed"):
        load_pack(linked)
    assert not (tmp_path / "outside.txt").exists()


def test_not_a_pack_at_all(tmp_path):
    with pytest.raises(PackError, match="no such file"):
        load_pack(tmp_path / "nothing")
    (tmp_path / "x.bin").write_bytes(b"\x00" * 10)
    with pytest.raises(PackError, match="neither a directory nor a tar"):
        load_pack(tmp_path / "x.bin")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "manifest.json").write_text("{not json")
    with pytest.raises(PackError, match=r"manifest\.json is not valid JSON"):
        load_pack(tmp_path / "d")
