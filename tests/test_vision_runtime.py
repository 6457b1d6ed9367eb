"""The runtime reads a model's scores and, when the pack's manifest names one, its embedding.

Which output is the embedding is the manifest's word (its size, or the tensor's name), never
TFLite's output order. Uses the tiny real models in tests/data/models (README there): in the
``tiny_embedding_*`` models TFLite happens to list the embedding first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from device.contracts.manifest import EmbeddingSpec, Manifest, PackError
from device.vision.pack import load_pack, write_pack
from device.vision.runtime import Model, ModelError

MODELS = Path(__file__).parent / "data" / "models"
CLASSES = 4
# The names the converter gave the two outputs of the tiny_embedding_* models (README):
# ":0" is the first Keras output (the softmax scores), ":1" the pooled features.
SCORES_TENSOR = "StatefulPartitionedCall_1:0"
EMBEDDING_TENSOR = "StatefulPartitionedCall_1:1"


def model_bytes(name: str) -> bytes:
    return (MODELS / name).read_bytes()


def uint8_image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)


def as_float_input(pixels: np.ndarray) -> np.ndarray:
    # The tiny models' float scaling (README): (x - 127) / 128.
    return (pixels.astype(np.float32) - 127.0) / 128.0


def pack_with(tmp_path: Path, model: str, embedding: dict[str, Any] | None) -> Path:
    spec: dict[str, Any] = {"file": "model.tflite", "output": "probabilities"}
    if embedding is not None:
        spec["embedding"] = embedding
    manifest = {
        "name": "tiny-embedding",
        "version": "1.0.0",
        "model": spec,
        "labels": {"file": "labels.txt", "format": "plain"},
    }
    files = {"model.tflite": model_bytes(model), "labels.txt": b"a\nb\nc\nd\n"}
    return write_pack(tmp_path / "pack", manifest, files)


# -- a model with one output: as before -------------------------------------------------------


def test_a_single_output_model_has_no_embedding():
    model = Model(model_bytes("tiny_uint8.tflite"))
    assert model.embedding is None and model.embedding_size is None
    scores, embedding = model.run_with_embedding(uint8_image())
    assert embedding is None
    assert scores.dtype == np.float32 and scores.shape == (CLASSES,)
    np.testing.assert_array_equal(scores, model.run(uint8_image()))


def test_a_manifest_embedding_for_a_single_output_model_is_refused():
    with pytest.raises(ModelError, match="names a 8-value embedding but the model has only one"):
        Model(model_bytes("tiny_uint8.tflite"), embedding=EmbeddingSpec(size=8))


# -- two outputs, told apart by the manifest ---------------------------------------------------


def test_the_embedding_is_found_by_its_size_whatever_the_output_order():
    model = Model(model_bytes("tiny_embedding_q.tflite"), embedding=EmbeddingSpec(size=8))
    assert model.embedding is not None
    assert model.embedding_size == 8 and model.num_classes == CLASSES
    assert model.embedding.name == EMBEDDING_TENSOR and model.output.name == SCORES_TENSOR
    scores, embedding = model.run_with_embedding(uint8_image())
    assert scores.dtype == np.float32 and scores.shape == (CLASSES,)
    assert abs(float(scores.sum()) - 1.0) < 0.02  # dequantised softmax
    assert embedding is not None and embedding.dtype == np.float32 and embedding.shape == (8,)
    assert (embedding >= 0).all() and embedding.any()  # pooled ReLU features


def test_scores_with_the_embedding_are_the_scores_alone():
    model = Model(model_bytes("tiny_embedding_q.tflite"), embedding=EmbeddingSpec(size=8))
    for seed in range(3):
        scores, _ = model.run_with_embedding(uint8_image(seed))
        np.testing.assert_array_equal(scores, model.run(uint8_image(seed)))


def test_the_quantised_embedding_dequantises_to_the_float_models():
    # Same weights, converted twice: the uint8 embedding, dequantised, points where the float
    # one does (a wrong scale or zero point would not).
    quantised = Model(model_bytes("tiny_embedding_q.tflite"), embedding=EmbeddingSpec(size=8))
    float_model = Model(model_bytes("tiny_embedding_fp.tflite"), embedding=EmbeddingSpec(size=8))
    for seed in range(5):
        pixels = uint8_image(seed)
        _, q = quantised.run_with_embedding(pixels)
        _, f = float_model.run_with_embedding(as_float_input(pixels))
        assert q is not None and f is not None
        cosine = float(q @ f / (np.linalg.norm(q) * np.linalg.norm(f)))
        assert cosine > 0.98, cosine
        assert float(np.abs(q - f).max()) < 0.05 * float(np.abs(f).max()) + 0.01


def test_two_outputs_of_one_shape_are_told_apart_by_name():
    content = model_bytes("tiny_embedding_same_size.tflite")
    by_name = Model(content, embedding=EmbeddingSpec(size=CLASSES, tensor=EMBEDDING_TENSOR))
    scores, embedding = by_name.run_with_embedding(uint8_image())
    assert by_name.output.name == SCORES_TENSOR
    assert abs(float(scores.sum()) - 1.0) < 0.02
    # Naming the other tensor swaps them: the name decides, not the order.
    swapped = Model(content, embedding=EmbeddingSpec(size=CLASSES, tensor=SCORES_TENSOR))
    scores2, embedding2 = swapped.run_with_embedding(uint8_image())
    assert embedding2 is not None and embedding is not None
    np.testing.assert_array_equal(scores2, embedding)
    np.testing.assert_array_equal(embedding2, scores)


def test_two_outputs_of_one_shape_without_a_name_are_refused():
    with pytest.raises(ModelError, match=r"both outputs are \[1, 4\].*model.embedding.tensor"):
        Model(model_bytes("tiny_embedding_same_size.tflite"), embedding=EmbeddingSpec(size=4))


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        (None, "model has two outputs .* but the manifest names no model.embedding"),
        (EmbeddingSpec(size=16), "model.embedding.size 16 matches no output"),
        (EmbeddingSpec(size=8, tensor="features"), "tensor 'features' is not an output"),
        (EmbeddingSpec(size=16, tensor=EMBEDDING_TENSOR), r"is not the manifest's \[1, 16\]"),
    ],
)
def test_an_embedding_the_model_does_not_have_is_refused(spec, problem):
    with pytest.raises(ModelError, match=problem):
        Model(model_bytes("tiny_embedding_q.tflite"), embedding=spec)


# -- from a pack ---------------------------------------------------------------------------------


def test_a_pack_names_its_embedding_in_the_manifest(tmp_path):
    pack = load_pack(pack_with(tmp_path, "tiny_embedding_q.tflite", {"size": 8}))
    model = Model.for_pack(pack)
    assert model.embedding_size == 8
    scores, embedding = model.run_with_embedding(uint8_image())
    assert scores.shape == (CLASSES,) and embedding is not None and embedding.shape == (8,)


def test_a_pack_with_a_second_output_but_no_manifest_entry_is_refused_naming_it(tmp_path):
    path = pack_with(tmp_path, "tiny_embedding_q.tflite", None)
    with pytest.raises(PackError, match=rf"^model pack {path}: model has two outputs") as caught:
        Model.for_pack(load_pack(path))
    assert "\n" not in str(caught.value)


def test_a_pack_whose_embedding_entry_does_not_match_is_refused_naming_it(tmp_path):
    path = pack_with(tmp_path, "tiny_embedding_q.tflite", {"size": 1280})
    with pytest.raises(PackError, match=rf"^model pack {path}: .*size 1280 matches no output"):
        Model.for_pack(load_pack(path))


def test_a_single_output_pack_loads_as_before(tmp_path):
    model = Model.for_pack(load_pack(pack_with(tmp_path, "tiny_uint8.tflite", None)))
    assert model.embedding is None and model.num_classes == CLASSES


# -- the manifest entry itself -----------------------------------------------------------------


def _manifest(embedding: Any) -> dict[str, Any]:
    return {
        "format": "camtrap-model-pack/1",
        "name": "x",
        "version": "1.0.0",
        "model": {"file": "model.tflite", "embedding": embedding},
        "labels": {"file": "labels.txt"},
        "files": {"model.tflite": {"sha256": "0" * 64}, "labels.txt": {"sha256": "0" * 64}},
    }


def test_the_manifest_embedding_entry_is_read_with_its_extra_keys():
    entry = {"size": 1280, "layer": "global average pooling"}
    spec = Manifest.from_document(_manifest(entry)).model.embedding
    assert spec is not None and spec.size == 1280 and spec.tensor is None
    assert Manifest.from_document(_manifest(None)).model.embedding is None


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"size": "1280"}, r"model.embedding.size: Input should be a valid integer"),
        ({"size": 0}, r"model.embedding.size: Input should be greater than or equal to 1"),
        ({}, r"model.embedding.size is missing"),
        ({"size": 8, "tensor": ""}, r"model.embedding.tensor: String should have at least 1"),
    ],
)
def test_a_malformed_embedding_entry_is_one_line_naming_it(entry, problem):
    with pytest.raises(PackError, match=problem):
        Manifest.from_document(_manifest(entry))
