"""The standard's own example package reads in, validates, and writes back out as valid."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cloud_stub.export.package import write_package
from cloud_stub.export.reader import read_package
from cloud_stub.export.tables import read_table
from cloud_stub.export.validate import validate_package

pytest.importorskip("frictionless")

SHARED = Path(__file__).resolve().parents[2] / "shared" / "camtrap-dp-1.0.2"
EXAMPLE = SHARED / "example" / "datapackage.json"


@pytest.fixture
def example(tmp_path: Path) -> Path:
    if not EXAMPLE.is_file():
        pytest.skip(f"the Camtrap DP 1.0.2 example package is not at {EXAMPLE.parent}")
    copy = tmp_path / "example"
    shutil.copytree(EXAMPLE.parent, copy)
    return copy / "datapackage.json"


def test_the_example_is_valid_against_the_vendored_schemas(example):
    result = validate_package(example)
    assert result.valid, result.summary()


def test_the_example_against_the_official_copy_of_the_schemas(example):
    result = validate_package(example, schema_dir=SHARED)
    assert result.valid, result.summary()


def test_the_example_round_trips_to_a_valid_package_with_the_same_rows(example, tmp_path):
    content = read_package(example)

    written = write_package(content, tmp_path / "again")

    assert written.validated
    assert validate_package(written.descriptor).valid
    for table in ("deployments", "media", "observations"):
        assert read_table(written.descriptor.parent / f"{table}.csv") == read_table(
            example.parent / f"{table}.csv"
        ), table
    before = json.loads(example.read_text())
    after = json.loads(written.descriptor.read_text())
    for key in ("project", "spatial", "temporal", "taxonomic", "contributors", "created"):
        assert after[key] == before[key], key
    # The custom "individuals" resource the example shows off survives too.
    assert [r["name"] for r in after["resources"]][3:] == ["individuals"]
    for _, relative in content.files:
        assert (written.descriptor.parent / relative).is_file()


def test_a_broken_example_is_reported_with_the_reason(example):
    descriptor = json.loads(example.read_text())
    del descriptor["project"]
    example.write_text(json.dumps(descriptor))

    result = validate_package(example)

    assert not result.valid
    assert any("project" in e for e in result.errors)
