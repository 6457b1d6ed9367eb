"""Pack format 2 and a head's weights: the contract both ends read the same way.

A head is a linear classifier over a named backbone's embedding. Its manifest names the
backbone by the sha256 of its model file, its weights are an ``.npz`` read without pickles,
and anything that does not match what the manifest says is refused in one line.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from device.contracts.head import HeadWeights
from device.contracts.manifest import FORMAT, FORMAT_V2, Manifest, PackError
from device.contracts.pack import DEFAULT_PACK_DIR, read_pack, write_pack

BACKBONE_SHA = "c" * 64


def head_document(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "format": FORMAT_V2,
        "kind": "head",
        "name": "site-head",
        "version": "1.0.0",
        "backbone": {
            "name": "efficientnet-lite0-imagenet",
            "version": "1.0.0",
            "sha256": BACKBONE_SHA,
            "embedding_size": 8,
        },
        "head": {"file": "head.npz", "weights": "int8", "kinds": ["blank", "animal"]},
        "labels": {"file": "labels.txt", "format": "speciesnet"},
        "files": {
            "head.npz": {"sha256": "a" * 64, "size": 10},
            "labels.txt": {"sha256": "b" * 64, "size": 4},
        },
    }
    doc.update(changes)
    return doc


def refusal(doc: dict[str, Any]) -> str:
    with pytest.raises(PackError) as caught:
        Manifest.from_document(doc)
    return str(caught.value)


# -- the manifest of each kind -----------------------------------------------------------------


def test_a_head_names_its_backbone_first_in_classified_by():
    manifest = Manifest.from_document(head_document())
    assert manifest.kind == "head"
    assert manifest.classified_by == "efficientnet-lite0-imagenet@1.0.0+site-head@1.0.0"
    assert manifest.model_sha256 == BACKBONE_SHA
    assert "head.npz" in manifest.referenced_files


def test_a_format_1_pack_is_a_full_pack_and_cannot_claim_another_kind():
    assert refusal(head_document(format=FORMAT)) == f"a head pack needs format {FORMAT_V2!r}"


def test_a_head_carries_no_model_of_its_own():
    doc = head_document(model={"file": "head.npz"})
    assert refusal(doc) == "a head pack has no model: it names its backbone"


def test_a_head_without_its_backbone_is_refused():
    doc = head_document()
    del doc["backbone"]
    assert refusal(doc) == "a head pack needs backbone, head and labels"


def test_a_head_class_kind_outside_the_list_is_refused():
    doc = head_document(head={"file": "head.npz", "kinds": ["blank", "ghost"]})
    assert "head class kind 'ghost' unknown" in refusal(doc)


def test_a_backbone_must_say_which_output_is_its_embedding():
    doc = {
        "format": FORMAT_V2,
        "kind": "backbone",
        "name": "bb",
        "version": "1.0.0",
        "model": {"file": "model.tflite"},
        "files": {"model.tflite": {"sha256": "a" * 64}},
    }
    assert refusal(doc) == "a backbone pack needs model.embedding (its output)"
    doc["model"] = {"file": "model.tflite", "embedding": {"size": 1280}}
    manifest = Manifest.from_document(doc)
    assert manifest.labels is None
    assert manifest.model_sha256 == "a" * 64


def test_a_full_pack_still_needs_labels():
    doc = head_document(format=FORMAT, kind="full", model={"file": "head.npz"})
    del doc["backbone"], doc["head"], doc["labels"]
    assert refusal(doc) == "manifest: labels is missing"


# -- the weights ---------------------------------------------------------------------------------


def test_int8_weights_round_trip_and_score_like_the_float_head():
    rng = np.random.default_rng(7)
    w, b = rng.normal(size=(5, 32)), rng.normal(size=5)
    head = HeadWeights.fit_float(w, b)
    loaded = HeadWeights.from_bytes(head.to_bytes(), "int8", 5, 32)
    x = rng.normal(size=(200, 32)).astype(np.float32)
    exact = np.exp(x @ w.T + b)
    exact /= exact.sum(axis=1, keepdims=True)
    got = loaded.apply(x)
    assert got.shape == (200, 5)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-5)
    # Per-class int8 steps: the quantised head's answer is the float head's answer.
    assert (got.argmax(axis=1) == exact.argmax(axis=1)).mean() >= 0.97
    assert np.abs(got - exact).max() < 0.05
    assert loaded.storage == "int8" and loaded.classes == 5 and loaded.embedding_size == 32


def test_a_class_of_small_weights_keeps_its_own_precision():
    w = np.array([[100.0, -50.0, 0.0], [0.001, -0.002, 0.0005]])
    head = HeadWeights.fit_float(w, np.zeros(2))
    np.testing.assert_allclose(head.matrix[1], w[1], atol=0.002 / 127 + 1e-9)


def test_float16_weights_carry_no_scales():
    head = HeadWeights.fit_float(np.ones((2, 4)), np.zeros(2), storage="float16")
    loaded = HeadWeights.from_bytes(head.to_bytes(), "float16", 2, 4)
    assert loaded.scales is None and loaded.weights.dtype == np.float16


def _npz(**arrays: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.savez(out, **arrays)  # type: ignore[arg-type]
    return out.getvalue()


GOOD = {
    "weights": np.zeros((2, 4), np.int8),
    "scales": np.ones(2, np.float32),
    "bias": np.zeros(2, np.float32),
}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not a zip at all", "head weights unreadable"),
        (_npz(**{**GOOD, "weights": np.zeros((3, 4), np.int8)}), "the manifest says int8 [2, 4]"),
        (_npz(**{**GOOD, "weights": np.zeros((2, 4), np.float32)}), "are float32 [2, 4]"),
        (_npz(**{**GOOD, "bias": np.zeros(2, np.float64)}), "head bias is float64"),
        (_npz(**{k: v for k, v in GOOD.items() if k != "scales"}), "a int8 head holds"),
        (_npz(**{**GOOD, "bias": np.array([np.nan, 0], np.float32)}), "not finite"),
        (_npz(**GOOD, extra=np.zeros(1)), "head weights hold"),
    ],
)
def test_weights_that_are_not_what_the_manifest_says_are_refused(data, message):
    with pytest.raises(PackError) as caught:
        HeadWeights.from_bytes(data, "int8", 2, 4)
    assert message in str(caught.value)


def test_weights_holding_a_pickled_object_are_never_unpickled():
    out = io.BytesIO()
    np.savez(out, weights=np.array([{"run": "code"}], dtype=object), bias=GOOD["bias"])
    with pytest.raises(PackError, match="head weights unreadable"):
        HeadWeights.from_bytes(out.getvalue(), "float16", 2, 4)


# -- a whole head pack ---------------------------------------------------------------------------


def _write_head(tmp_path: Path, kinds: list[str], classes: int = 2) -> Path:
    backbone = read_pack(DEFAULT_PACK_DIR).manifest
    head = HeadWeights.fit_float(np.zeros((classes, 1280)), np.zeros(classes))
    labels = "".join(f"{i:08d}-0000-0000-0000-000000000000;;;;;;class {i}\n" for i in range(2))
    return write_pack(
        tmp_path / "head",
        {
            "kind": "head",
            "name": "site-head",
            "version": "1.0.0",
            "backbone": {
                "name": backbone.name,
                "version": backbone.version,
                "sha256": backbone.model_sha256,
                "embedding_size": 1280,
            },
            "head": {"file": "head.npz", "weights": "int8", "kinds": kinds},
            "labels": {"file": "labels.txt", "format": "speciesnet"},
        },
        {"head.npz": head.to_bytes(), "labels.txt": labels.encode()},
    )


def test_a_head_pack_is_written_as_format_2_and_its_kinds_win_over_name_guesses(tmp_path):
    pack = _write_head(tmp_path, ["blank", "human"])
    assert json.loads((pack / "manifest.json").read_text())["format"] == FORMAT_V2
    contents = read_pack(pack)
    assert contents.kind == "head"
    assert [t.kind for t in contents.taxa] == ["blank", "human"]
    assert contents.head is not None and contents.head.classes == 2
    # The whole update a trap downloads is kilobytes, not the backbone's megabytes.
    assert sum(f.stat().st_size for f in pack.rglob("*") if f.is_file()) < 10_000


def test_a_head_whose_kinds_do_not_match_its_labels_is_refused(tmp_path):
    with pytest.raises(PackError, match=r"head\.kinds has 3 entries for 2 labels"):
        _write_head(tmp_path, ["blank", "animal", "animal"])


def test_a_head_whose_weights_do_not_match_its_labels_is_refused(tmp_path):
    with pytest.raises(PackError, match=r"the manifest says int8 \[2, 1280\]"):
        _write_head(tmp_path, ["blank", "animal"], classes=3)


def test_a_full_pack_is_still_written_as_format_1(tmp_path):
    # So that every agent ever shipped still reads it: write_pack chooses format 2 only for
    # the kinds that need it.
    shipped = read_pack(DEFAULT_PACK_DIR)
    manifest = shipped.manifest
    assert manifest.kind == "full" and manifest.format == FORMAT
    assert manifest.model is not None and manifest.labels is not None
    written = write_pack(
        tmp_path / "full",
        {
            "name": "copy",
            "version": "1.0.0",
            "model": {"file": manifest.model.file, "embedding": {"size": 1280}},
            "labels": {"file": manifest.labels.file, "format": manifest.labels.format},
        },
        {name: shipped.files[name] for name in (manifest.model.file, manifest.labels.file)},
    )
    assert json.loads((written / "manifest.json").read_text())["format"] == FORMAT
    assert read_pack(written).kind == "full"
