"""Training hand-off on Apache Beam (DirectRunner): clean, balance, hand off, report."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from cloud_stub.cli import main as cloud_main
from cloud_stub.handoff.categories import DEFAULT_DROP, DropList
from cloud_stub.handoff.handoff import HandoffConfig, run_handoff
from cloud_stub.handoff.records import HandoffError, automl_label
from tests.support.cloud_data import (
    DIRTY_CATEGORIES,
    Site,
    add_review,
    fill_store,
    write_coco,
)

pytest.importorskip("apache_beam")


@pytest.fixture(scope="module")
def coco(tmp_path_factory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("coco") / "wcs_like.json"
    data = write_coco(path, annotations=10_000, seed=11)
    return path, data


@pytest.fixture(scope="module")
def sources(coco, tmp_path_factory) -> Path:
    """A tiny file for every image in the fixture, so the copy step has real sources."""
    _, data = coco
    root = tmp_path_factory.mktemp("dataset")
    for image in data["images"]:
        target = root / image["file_name"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"\xff\xd8fake-jpeg" + image["id"].encode())
    return root


def expected_clean_counts(data: dict) -> Counter:
    """Images per label after dropping categories and ambiguous images, computed directly."""
    names = {c["id"]: c["name"] for c in data["categories"]}
    drop = DropList.of(DEFAULT_DROP)
    labels: dict[str, set[str]] = {}
    for ann in data["annotations"]:
        name = names[ann["category_id"]]
        if not drop.drops(name):
            labels.setdefault(ann["image_id"], set()).add(automl_label(name))
    return Counter(next(iter(ls)) for ls in labels.values() if len(ls) == 1)


def dry(coco_path: Path, out: Path, **kwargs) -> object:
    return run_handoff(HandoffConfig(out_dir=out, coco=str(coco_path), dry_run=True, **kwargs))


def test_fixture_is_big_and_dirty_enough(coco):
    _, data = coco
    assert len(data["annotations"]) >= 10_000
    assert set(DIRTY_CATEGORIES) <= {c["name"] for c in data["categories"]}


def test_dirty_categories_are_dropped_including_the_families_the_sample_kept(coco, tmp_path):
    path, _ = coco
    report = dry(path, tmp_path / "out")

    assert set(report.dropped) == set(DIRTY_CATEGORIES)
    for label in report.before:
        assert not label.startswith("unknown")
        assert not re.search(r"_desconocid[oa]$", label)


def test_counts_before_balancing_match_the_data(coco, tmp_path):
    path, data = coco
    report = dry(path, tmp_path / "out")

    assert sum(report.raw.values()) == len(data["annotations"])
    assert report.before == dict(expected_clean_counts(data))
    assert report.ambiguous_images > 0


def test_balance_bounds_hold_and_small_classes_are_reported(coco, tmp_path):
    path, data = coco
    report = dry(path, tmp_path / "out", min_per_class=50, max_per_class=100)

    expected = expected_clean_counts(data)
    for label, n in expected.items():
        if n < 50:
            assert label in report.below_minimum
            assert label not in report.after
        else:
            assert report.after[label] == min(n, 100)
    assert report.below_minimum  # the fixture has classes below the minimum


def test_selection_is_reproducible_with_a_seed_and_changes_with_another(coco, sources, tmp_path):
    path, _ = coco

    def selected(seed: int, name: str) -> list[tuple[str, str]]:
        out = tmp_path / name
        run_handoff(
            HandoffConfig(
                out_dir=out,
                coco=str(path),
                url_prefix=str(sources),
                seed=seed,
                min_per_class=20,
                max_per_class=30,
            )
        )
        rows = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
        return [(r["label"], r["imageID"]) for r in rows]

    first, again, other = selected(1, "a"), selected(1, "b"), selected(2, "c")
    assert first and first == again
    assert other != first
    assert Counter(label for label, _ in other) == Counter(label for label, _ in first)


def test_import_csv_and_manifest_format(coco, sources, tmp_path):
    path, data = coco
    images = sources
    names = {c["id"]: c["name"] for c in data["categories"]}
    out = tmp_path / "out"

    report = run_handoff(
        HandoffConfig(
            out_dir=out,
            coco=str(path),
            url_prefix=str(images),
            seed=3,
            min_per_class=50,
            max_per_class=60,
        )
    )

    with (out / "automl_import.csv").open(newline="") as handle:
        lines = list(csv.reader(handle))
    assert len(lines) == sum(report.after.values())
    allowed = set(report.after)
    for target, label in lines:
        assert label in allowed and re.fullmatch(r"[a-z][a-z0-9_]{0,31}", label)
        assert Path(target).is_absolute() and Path(target).is_file()
        assert Path(target).is_relative_to(out / "images")
    assert lines == sorted(lines, key=lambda row: (row[1], row[0]))
    manifest = [json.loads(x) for x in (out / "automl_import.jsonl").read_text().splitlines()]
    assert {(m["imageGcsUri"], m["classificationAnnotation"]["displayName"]) for m in manifest} == {
        (t, lab) for t, lab in lines
    }
    assert report.copies == {"copied": len(lines)}
    assert set(names.values()) >= set(report.label_names.values())

    again = run_handoff(
        HandoffConfig(
            out_dir=out,
            coco=str(path),
            url_prefix=str(images),
            seed=3,
            min_per_class=50,
            max_per_class=60,
        )
    )
    assert again.copies == {"skipped": len(lines)}  # files already there are not fetched again


def test_drop_list_is_configurable(coco, tmp_path):
    path, _ = coco
    report = dry(path, tmp_path / "out", drop_patterns=("species a*",))

    assert all(not label.startswith("species_a") for label in report.before)
    assert "unknown_bird" in report.before  # not dropped once the default list is replaced


def test_dry_run_prints_counts_and_every_run_writes_the_report(coco, tmp_path, capsys):
    path, _ = coco
    out = tmp_path / "out"
    code = cloud_main(["handoff", "--out", str(out), "--coco", str(path), "--dry-run"])

    printed = capsys.readouterr().out
    assert code == 0
    assert "before" in printed and "after" in printed and "DirectRunner" in printed
    report = json.loads((out / "report.json").read_text())
    for label, n in report["before"].items():
        assert re.search(
            rf"^{re.escape(label)}\s+{n}\s+{report['after'].get(label, 0)}", printed, re.M
        )
    assert (out / "report.txt").read_text().strip() == printed.strip()
    assert not (out / "automl_import.csv").exists()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("annotations"), "lacks the key"),
        (lambda d: d["annotations"][0].update(category_id=9999), "unknown category_id"),
        (lambda d: d["annotations"][1].update(image_id="no-such-image"), "image has no file"),
        (lambda d: d["images"][2].pop("file_name"), "without file_name"),
    ],
)
def test_bad_coco_files_are_refused_with_a_reason(tmp_path, mutate, message, capsys):
    data = write_coco(tmp_path / "c.json", annotations=200, seed=1)
    mutate(data)
    (tmp_path / "c.json").write_text(json.dumps(data))

    code = cloud_main(
        ["handoff", "--out", str(tmp_path / "o"), "--coco", str(tmp_path / "c.json"), "--dry-run"]
    )

    err = capsys.readouterr().err
    assert code == 1
    assert message in err and "Traceback" not in err


def test_skip_bad_leaves_bad_entries_out_and_counts_them(tmp_path):
    data = write_coco(tmp_path / "c.json", annotations=300, seed=1)
    data["annotations"][0]["category_id"] = 9999
    (tmp_path / "c.json").write_text(json.dumps(data))

    report = run_handoff(
        HandoffConfig(
            out_dir=tmp_path / "o",
            coco=str(tmp_path / "c.json"),
            dry_run=True,
            skip_bad=True,
            min_per_class=1,
        )
    )

    assert report.bad_entries == {"annotations with an unknown category_id": 1}
    assert sum(report.raw.values()) == len(data["annotations"]) - 1


def test_not_json_and_missing_file_are_clear_errors(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(HandoffError, match="cannot read COCO"):
        run_handoff(HandoffConfig(out_dir=tmp_path / "o", coco=str(tmp_path / "bad.json")))
    with pytest.raises(HandoffError, match="cannot read COCO"):
        run_handoff(HandoffConfig(out_dir=tmp_path / "o", coco=str(tmp_path / "absent.json")))


def test_min_above_max_is_refused(coco, tmp_path):
    path, _ = coco
    with pytest.raises(HandoffError, match="min-per-class"):
        dry(path, tmp_path / "o", min_per_class=10, max_per_class=5)


def test_stub_input_uses_human_labels_over_machine_ones(tmp_path):
    filled = fill_store(tmp_path / "ingest", [Site("dep-a", "trap-1")], captures=6, frames=2)
    animals = [o for o in filled.observations if o["observation_type"] == "animal"]
    reviewed = animals[:3]
    for machine in reviewed:
        add_review(filled.root, machine, scientific_name="Martes foina")
    out = tmp_path / "out"

    report = run_handoff(
        HandoffConfig(out_dir=out, ingest_root=filled.root, min_per_class=1, max_per_class=10)
    )

    assert report.before == {"martes_foina": 3}  # only verified labels by default
    rows = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert {r["imageID"] for r in rows} == {m["media_id"] for m in reviewed}
    assert all(Path(r["target"]).is_file() for r in rows)

    mixed = run_handoff(
        HandoffConfig(
            out_dir=tmp_path / "out2",
            ingest_root=filled.root,
            include_machine=True,
            min_per_class=1,
            dry_run=True,
        )
    )
    machine_only = Counter(automl_label(o["scientific_name"]) for o in animals[3:])
    assert mixed.before["martes_foina"] == 3
    for label, n in machine_only.items():
        assert mixed.before[label] == n
