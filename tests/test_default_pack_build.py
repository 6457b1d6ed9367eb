"""build_default_pack.py rewrites the pack's manifest without losing what others added to it.

The calibration table (calibration.json, written by calibrate_default_pack.py after a build)
must survive a rebuild: still a file of the pack, listed with its sha256 and size, and still
named by the manifest's ``calibration`` entry. Only the script's manifest writing is exercised
here (it needs no TensorFlow); the build itself runs in the build venv.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

from device.contracts.manifest import Manifest

MODELS = Path(__file__).resolve().parents[1] / "device" / "models"


@pytest.fixture(scope="module")
def build():
    # A dev-time script, loaded by path; it sets TensorFlow's environment defaults when
    # imported, which must not leak into the rest of the test run.
    saved = dict(os.environ)
    try:
        spec = importlib.util.spec_from_file_location(
            "build_default_pack", MODELS / "build_default_pack.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules.setdefault(spec.name, module)
        spec.loader.exec_module(module)
        return module
    finally:
        os.environ.clear()
        os.environ.update(saved)


def a_built_pack(pack: Path) -> Path:
    """The files a build writes, small stand-ins with the real names."""
    (pack / "golden").mkdir(parents=True)
    for name in ("model.tflite", "labels.txt", "taxonomy.json", "geofence.json", "NOTICE"):
        (pack / name).write_bytes(name.encode())
    (pack / "golden" / "coffee.jpg").write_bytes(b"jpeg")
    return pack


GOLDEN = [{"file": "golden/coffee.jpg", "expect_top": ["espresso"], "top_k": 5}]


def rewrite(build, pack: Path) -> dict:
    doc = build.manifest(pack, GOLDEN, "test", build.kept_calibration(pack))
    (pack / "manifest.json").write_text(json.dumps(doc), encoding="utf-8")
    return doc


def test_a_pack_without_calibration_gets_no_calibration_entry(tmp_path, build):
    doc = rewrite(build, a_built_pack(tmp_path / "pack"))
    assert "calibration" not in doc and "calibration.json" not in doc["files"]
    assert Manifest.from_document(doc).model.embedding is not None


def test_a_calibration_file_in_the_pack_is_kept_listed_and_named(tmp_path, build):
    pack = a_built_pack(tmp_path / "pack")
    table = b'{"format": "camtrap-calibration/1"}\n'
    (pack / "calibration.json").write_bytes(table)
    first = rewrite(build, pack)
    second = rewrite(build, pack)  # a rebuild over a pack whose manifest names it already
    for doc in (first, second):
        assert doc["calibration"] == {"file": "calibration.json"}
        assert doc["files"]["calibration.json"] == {
            "sha256": hashlib.sha256(table).hexdigest(),
            "size": len(table),
        }
    assert (pack / "calibration.json").read_bytes() == table


def test_an_existing_calibration_entry_is_kept_as_written(tmp_path, build):
    pack = a_built_pack(tmp_path / "pack")
    (pack / "tables").mkdir()
    (pack / "tables" / "serengeti.json").write_bytes(b"{}")
    entry = {"file": "tables/serengeti.json", "note": "kept verbatim"}
    (pack / "manifest.json").write_text(json.dumps({"calibration": entry}), encoding="utf-8")
    doc = rewrite(build, pack)
    assert doc["calibration"] == entry
    assert "tables/serengeti.json" in doc["files"]


def test_a_calibration_entry_whose_file_is_gone_is_dropped(tmp_path, build):
    pack = a_built_pack(tmp_path / "pack")
    entry = {"file": "calibration.json"}
    (pack / "manifest.json").write_text(json.dumps({"calibration": entry}), encoding="utf-8")
    assert "calibration" not in rewrite(build, pack)


def test_the_manifest_names_the_embedding_output(tmp_path, build):
    doc = rewrite(build, a_built_pack(tmp_path / "pack"))
    spec = Manifest.from_document(doc).model.embedding
    assert spec is not None and spec.size == 1280 and spec.tensor is None
