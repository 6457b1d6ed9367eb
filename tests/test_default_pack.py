"""The default model pack committed under device/models/ is complete, consistent and real.

Runs in the project venv (ai_edge_litert, no TensorFlow): everything here checks the files
as shipped, so a rebuilt or hand-edited pack that drifts from its manifest fails.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "device" / "models"
PACK = MODELS / "efficientnet-lite0-imagenet"
TEST_MODELS = ROOT / "tests" / "data" / "models"
KINDS = {"animal", "human", "vehicle", "object"}
# The committed model, pinned: a rebuild (device/models/build_default_pack.py) that changes
# a byte of it must change this constant too, on purpose.
MODEL_SHA256 = "dd72c5254a80b66047a6adb3c438fc4a1977b2d44dd455e00370c58396b983eb"
EMBEDDING_SIZE = 1280


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((PACK / "manifest.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def interpreter():
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(PACK / "model.tflite"), num_threads=1)
    interp.allocate_tensors()
    return interp


@pytest.fixture(scope="module")
def labels() -> list[tuple[str, str]]:
    lines = (PACK / "labels.txt").read_text(encoding="utf-8").splitlines()
    return [tuple(line.split("\t")) for line in lines]


@pytest.fixture(scope="module")
def taxonomy() -> list[dict]:
    return json.loads((PACK / "taxonomy.json").read_text(encoding="utf-8"))


def output(interpreter, width: int) -> dict:
    """The output of this width: by shape, as the runtime finds it, never by order."""
    (found,) = [d for d in interpreter.get_output_details() if d["shape"][-1] == width]
    return found


def load_pack_metadata():
    # device/models holds dev-time scripts, not an importable package: load by path.
    spec = importlib.util.spec_from_file_location("pack_metadata", MODELS / "pack_metadata.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_manifest_names_the_format_and_the_pack(manifest):
    assert manifest["format"] == "camtrap-model-pack/1"
    assert manifest["name"] == PACK.name
    assert manifest["model"]["file"] == "model.tflite"
    assert manifest["labels"] == {"file": "labels.txt", "format": "imagenet_wnid_tab_name"}


def test_model_sha256_equals_manifest_and_build_record(manifest):
    actual = sha256(PACK / "model.tflite")
    record = json.loads((MODELS / "build_record.json").read_text(encoding="utf-8"))
    assert manifest["files"]["model.tflite"]["sha256"] == actual
    assert record["artifacts"]["model.tflite"]["sha256"] == actual


def test_model_sha256_is_the_pinned_one(manifest):
    assert sha256(PACK / "model.tflite") == MODEL_SHA256
    assert manifest["files"]["model.tflite"]["sha256"] == MODEL_SHA256


def test_build_record_says_two_builds_gave_the_same_model():
    record = json.loads((MODELS / "build_record.json").read_text(encoding="utf-8"))
    assert record["reproducibility"] == {
        "previous_model_sha256": MODEL_SHA256,
        "identical_to_previous_build": True,
    }
    # The embedding output was checked not to change a single score.
    unchanged = record["scores_vs_probabilities_only_model"]
    assert unchanged["images"] > 0 and unchanged["byte_identical_scores"] == unchanged["images"]


def test_manifest_lists_every_file_with_its_hash_and_size(manifest):
    on_disk = {
        str(p.relative_to(PACK))
        for p in PACK.rglob("*")
        if p.is_file() and p.name != "manifest.json"
    }
    assert set(manifest["files"]) == on_disk
    for name, entry in manifest["files"].items():
        path = PACK / name
        assert entry == {"sha256": sha256(path), "size": path.stat().st_size}, name


def test_model_takes_uint8_image_and_gives_uint8_scores_and_embedding(interpreter, manifest):
    (inp,) = interpreter.get_input_details()
    assert len(interpreter.get_output_details()) == 2
    out, emb = output(interpreter, 1000), output(interpreter, EMBEDDING_SIZE)
    assert inp["dtype"] == np.uint8 and list(inp["shape"]) == [1, 224, 224, 3]
    assert out["dtype"] == np.uint8 and list(out["shape"]) == [1, 1000]
    assert emb["dtype"] == np.uint8 and list(emb["shape"]) == [1, EMBEDDING_SIZE]
    assert emb["quantization"][0] > 0  # quantised like the scores
    size = manifest["model"]["input"]
    assert [size["height"], size["width"], size["channels"]] == list(inp["shape"][1:])
    assert manifest["model"]["embedding"]["size"] == EMBEDDING_SIZE


def test_the_runtime_serves_scores_and_embedding_from_the_pack(labels):
    from device.vision.pack import load_pack
    from device.vision.runtime import Model

    model = Model.for_pack(load_pack(PACK))
    assert model.embedding_size == EMBEDDING_SIZE and model.num_classes == 1000
    pixels = np.asarray(_pixels(PACK / "golden" / "coffee.jpg", 224), np.uint8)[None]
    scores, embedding = model.run_with_embedding(pixels)
    # The scores, not the embedding: probabilities, espresso first (uint8 steps of 1/256
    # round the many tiny ones to 0, so the sum falls short of 1).
    assert labels[int(np.argmax(scores))][1] == "espresso"
    assert 0.5 < float(scores.sum()) <= 1.0 + 1e-6
    assert embedding is not None and embedding.shape == (EMBEDDING_SIZE,)
    assert (embedding >= 0).all() and (embedding <= 6.0 + 0.05).all()  # means of ReLU6


def _embedding(model, image: Image.Image) -> np.ndarray:
    pixels = np.asarray(
        image.convert("RGB").resize((224, 224), Image.Resampling.BILINEAR), np.uint8
    )
    _, embedding = model.run_with_embedding(pixels[None])
    assert embedding is not None
    return embedding / np.linalg.norm(embedding)


def test_an_image_embeds_nearer_a_shifted_crop_of_itself_than_other_images(manifest):
    # What the site memory relies on: the same scene, framed a little differently, is near;
    # a different scene is far.
    from device.vision.pack import load_pack
    from device.vision.runtime import Model

    model = Model.for_pack(load_pack(PACK))
    images = [Image.open(PACK / g["file"]) for g in manifest["golden"]]
    for i, image in enumerate(images):
        w, h = image.size
        s = min(w, h)
        a = _embedding(model, image.crop((0, 0, s, s)))
        shifted = image.crop((w - s, h - s, w, h)).crop((8, 8, s - 8, s - 8))
        near = float(a @ _embedding(model, shifted))
        others = [float(a @ _embedding(model, o)) for j, o in enumerate(images) if j != i]
        assert near > max(others), (manifest["golden"][i]["file"], near, others)


def test_input_quantisation_lets_raw_pixels_feed_directly(interpreter, manifest):
    # (x - mean) / std quantised with (scale, zero point) is the identity on 0..255 exactly
    # when scale == 1/std and zero point == mean.
    scale, zero = interpreter.get_input_details()[0]["quantization"]
    pre = manifest["model"]["preprocess"]
    assert set(pre["mean"]) == {float(zero)}
    assert set(pre["std"]) == {1 / scale}


def test_labels_file_has_one_line_per_output(interpreter, labels):
    assert len(labels) == 1000 == int(output(interpreter, 1000)["shape"][-1])
    assert all(len(row) == 2 and re.fullmatch(r"n\d{8}", row[0]) for row in labels)
    names = [name.lower() for _, name in labels]
    assert len(set(names)) == len(names), "label names must be unique"


def test_every_label_has_a_taxonomy_entry_in_output_order(labels, taxonomy):
    assert [(e["wnid"], e["label"]) for e in taxonomy] == labels
    assert [e["index"] for e in taxonomy] == list(range(len(labels)))
    for e in taxonomy:
        assert e["kind"] in KINDS, e
        if e["kind"] in {"animal", "human"}:
            fields = e["taxonomy"].split(";")
            assert len(fields) == 5 and e["taxonomy"] == e["taxonomy"].lower(), e
            assert e["rank"] and e["scientific_name"] and e["common_name"], e
        else:
            assert e["taxonomy"] == "", e


def test_taxonomy_keeps_domestic_breeds_and_people_together(taxonomy):
    by_label = {e["label"]: e for e in taxonomy}
    dogs = {e["taxonomy"] for e in taxonomy[151:269]}
    cats = {e["taxonomy"] for e in taxonomy[281:286]}
    assert dogs == {"mammalia;carnivora;canidae;canis;familiaris"}
    assert cats == {"mammalia;carnivora;felidae;felis;catus"}
    for person in ("scuba diver", "groom", "ballplayer"):
        assert by_label[person]["kind"] == "human"
    for vehicle in ("tractor", "mountain bike", "pickup", "canoe", "airliner"):
        assert by_label[vehicle]["kind"] == "vehicle"
    assert by_label["African elephant"]["scientific_name"] == "Loxodonta africana"


def test_geofence_keys_are_pack_taxa_with_iso_country_codes(taxonomy):
    fence = json.loads((PACK / "geofence.json").read_text(encoding="utf-8"))
    animal_taxa = {e["taxonomy"] for e in taxonomy if e["kind"] == "animal"}
    assert fence, "the pack ships geofence rules"
    for key, rule in fence.items():
        assert len(key.split(";")) == 5 and key in animal_taxa, key
        assert set(rule) <= {"allow", "block"} and rule, key
        for countries in rule.values():
            for code, admin1 in countries.items():
                assert re.fullmatch(r"[A-Z]{3}", code), (key, code)
                assert not admin1 or code == "USA", (key, code)
                assert all(re.fullmatch(r"[A-Z]{2}", s) for s in admin1), (key, admin1)


def test_geofence_confines_well_known_species(taxonomy):
    fence = json.loads((PACK / "geofence.json").read_text(encoding="utf-8"))
    panda = fence["mammalia;carnivora;ursidae;ailuropoda;melanoleuca"]["allow"]
    koala = fence["mammalia;diprotodontia;phascolarctidae;phascolarctos;cinereus"]["allow"]
    elephant = fence["mammalia;proboscidea;elephantidae;loxodonta;africana"]["allow"]
    assert panda == {"CHN": []} and koala == {"AUS": []}
    assert "KEN" in elephant and "USA" not in elephant and "IND" not in elephant


def test_taxonomy_and_geofence_rebuild_from_the_typed_data(tmp_path, labels):
    meta = load_pack_metadata()
    classes = meta.read_labels(PACK / "labels.txt")
    meta.write_metadata(tmp_path, classes)
    for name in ("labels.txt", "taxonomy.json", "geofence.json"):
        assert (tmp_path / name).read_bytes() == (PACK / name).read_bytes(), name


def _pixels(path: Path, side: int) -> np.ndarray:
    img = Image.open(path).convert("RGB")
    w, h = img.size
    s = min(w, h)
    box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
    return np.asarray(img.crop(box).resize((side, side), Image.BILINEAR), np.float32)


@pytest.mark.parametrize("index", [0, 1, 2])
def test_golden_image_gives_its_expected_top_labels(index, manifest, interpreter, labels):
    golden = manifest["golden"]
    if index >= len(golden):
        pytest.skip(f"pack has {len(golden)} golden images")
    entry = golden[index]
    inp = interpreter.get_input_details()[0]
    out = output(interpreter, 1000)
    pre = manifest["model"]["preprocess"]
    x = (_pixels(PACK / entry["file"], 224) - pre["mean"]) / pre["std"]
    scale, zero = inp["quantization"]
    q = np.clip(np.round(x / scale + zero), 0, 255).astype(np.uint8)[None]
    interpreter.set_tensor(inp["index"], q)
    interpreter.invoke()
    scores = interpreter.get_tensor(out["index"])[0]
    top = [labels[i][1] for i in np.argsort(-scores.astype(np.int32), kind="stable")]
    assert set(entry["expect_top"]) <= set(top[: entry["top_k"]]), top[: entry["top_k"]]


def test_golden_images_are_small_jpegs(manifest):
    assert 2 <= len(manifest["golden"]) <= 4
    for entry in manifest["golden"]:
        with Image.open(PACK / entry["file"]) as img:
            assert img.format == "JPEG" and max(img.size) <= 320


@pytest.mark.parametrize(
    ("name", "dtype", "output_shapes"),
    [
        ("tiny_float32.tflite", np.float32, [[1, 4]]),
        ("tiny_uint8.tflite", np.uint8, [[1, 4]]),
        ("tiny_int8.tflite", np.int8, [[1, 4]]),
        ("tiny_int16_input.tflite", np.int16, [[1, 4]]),
        ("tiny_embedding_q.tflite", np.uint8, [[1, 4], [1, 8]]),
        ("tiny_embedding_fp.tflite", np.float32, [[1, 4], [1, 8]]),
        ("tiny_embedding_same_size.tflite", np.uint8, [[1, 4], [1, 4]]),
    ],
)
def test_tiny_test_models_have_their_documented_tensors(name, dtype, output_shapes):
    from ai_edge_litert.interpreter import Interpreter

    path = TEST_MODELS / name
    assert path.stat().st_size < 100_000
    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    (inp,) = interp.get_input_details()
    assert inp["dtype"] == dtype and list(inp["shape"]) == [1, 32, 32, 3]
    shapes = sorted(list(map(int, d["shape"])) for d in interp.get_output_details())
    assert shapes == output_shapes
