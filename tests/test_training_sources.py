"""Where ``camtrap-cloud train`` takes its labels from: reviewers' verdicts in an ingest store
(never the machine's), or a labelled folder; and the clear one-line refusals when the labels
cannot train anything."""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path

import pytest

from cloud_stub.ingest.store import open_store_db, store_path
from cloud_stub.registry.store import RegistryStore
from cloud_stub.review.reviews import save_review
from cloud_stub.training.errors import TrainingError
from cloud_stub.training.folder_source import folder_images
from cloud_stub.training.ingest_source import ingest_images
from tests.support.bursts import write_bursts
from tests.support.training_world import TAXA, review, reviewed_store, train


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    """Two deployments of eight bursts each, uploaded, with machine observations only."""
    root = tmp_path_factory.mktemp("ingest") / "root"
    bursts = reviewed_store(root, ["dep-a", "dep-b"], 8, seed=11)
    return root, bursts


def copy_store(source: Path, target: Path) -> Path:
    """A private copy (reviews written by one test must not reach another)."""
    target.mkdir(parents=True)
    src = sqlite3.connect(store_path(source))
    dst = sqlite3.connect(store_path(target))
    with dst:
        src.backup(dst)
    src.close()
    dst.close()
    (target / "media").symlink_to(source / "media")
    return target


# -- the ingest store -------------------------------------------------------------------------


def test_machine_labels_never_train(store, tmp_path):
    root, _ = store
    out = tmp_path / "head"
    code, _, stderr = train("--root", root, "--out", out, "--cache", tmp_path / "cache")
    assert code == 1
    assert "no human-reviewed observations" in stderr
    assert "machine labels never train" in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert not out.exists() and not out.with_name("head.report").exists()


def test_only_the_frames_people_reviewed_are_labelled(store, tmp_path):
    root, bursts = store
    root = copy_store(root, tmp_path / "ingest")
    reviewed = [b for b in bursts if b.deployment_id == "dep-a"][:5]
    review(root, reviewed)
    labelled = ingest_images(root)
    assert {i.key for i in labelled.images} == {m for b in reviewed for m in b.media_ids}
    by_event = {b.event_id: b.truth for b in reviewed}
    for image in labelled.images:
        assert image.cls.display == by_event[image.event]  # never the machine's "red fox"
        assert image.deployment == "dep-a"


def test_the_latest_review_of_an_event_wins(store, tmp_path):
    root, bursts = store
    root = copy_store(root, tmp_path / "ingest")
    burst = bursts[0]
    review(root, [burst], label=lambda b: "domestic horse")
    review(root, [burst], label=lambda b: "blank", username="bob")
    labelled = ingest_images(root)
    assert {i.cls.name for i in labelled.images} == {"blank"}
    assert len(labelled.images) == len(burst.media_ids)


def test_a_species_keeps_its_reviewed_taxonomy_in_its_speciesnet_label(store, tmp_path):
    root, bursts = store
    root = copy_store(root, tmp_path / "ingest")
    review(root, bursts[:1], label=lambda b: "domestic cat")
    (image, *_) = ingest_images(root).images
    uuid, *fields, common = image.cls.label_line().split(";")
    assert ";".join(fields) == TAXA["domestic cat"].taxonomy
    assert common == "domestic cat"
    assert image.cls.label_id == uuid  # derived from the name: stable across retraining


def test_one_class_is_a_clear_error(store, tmp_path):
    root, bursts = store
    root = copy_store(root, tmp_path / "ingest")
    review(root, bursts, label=lambda b: "blank")
    code, _, stderr = train("--root", root, "--out", tmp_path / "head",
                            "--cache", tmp_path / "cache")  # fmt: skip
    assert code == 1
    assert "need at least two classes" in stderr and "'blank'" in stderr
    assert not (tmp_path / "head").exists()


def test_a_deployment_the_store_does_not_have_is_named(store, tmp_path):
    root, _ = store
    code, _, stderr = train("--root", root, "--deployment", "dep-zz", "--out", tmp_path / "h")
    assert code == 1
    assert "no deployment 'dep-zz' in the store (it has: dep-a, dep-b)" in stderr


def test_country_comes_from_the_registry(store, tmp_path):
    root, bursts = store
    root = copy_store(root, tmp_path / "ingest")
    review(root, bursts)
    registry = RegistryStore(tmp_path / "registry")
    registry.put_deployment("trap-0", {"deploymentID": "dep-a", "countryCode": "TZA"})
    registry.put_deployment("trap-1", {"deploymentID": "dep-b", "countryCode": "BEL"})
    code, _, stderr = train("--root", root, "--country", "tza", "--out", tmp_path / "h")
    assert code == 2 and "--country needs --registry DIR" in stderr
    labelled = ingest_images(root, country="tza", registry=tmp_path / "registry")
    assert {i.deployment for i in labelled.images} == {"dep-a"}
    with pytest.raises(TrainingError, match="no deployment in the store is in country 'NLD'"):
        ingest_images(root, country="NLD", registry=tmp_path / "registry")


def test_a_frame_only_a_thumbnail_reached_is_left_out_and_counted(store, tmp_path):
    root, bursts = store
    root = copy_store(root, tmp_path / "ingest")
    review(root, bursts[:2])
    db = sqlite3.connect(store_path(root))
    with db:
        db.execute("UPDATE media SET file_path = NULL WHERE media_id = ?",
                   (bursts[0].media_ids[0],))  # fmt: skip
    db.close()
    labelled = ingest_images(root)
    assert len(labelled.images) == len(bursts[0].media_ids) + len(bursts[1].media_ids) - 1
    assert labelled.left_out == {"frame without its full-resolution file (thumbnail at most)": 1}


def test_an_unknown_taxon_is_left_out_as_machine_unusable(store, tmp_path):
    root, bursts = store
    root = copy_store(root, tmp_path / "ingest")
    db = open_store_db(root, write=True)
    unknown = TAXA["domestic cat"].__class__("Unknown", "unknown", None, None)
    save_review(db, bursts[0].event_id, username="alice", action="correct", choice=unknown)
    db.close()
    review(root, bursts[1:3])
    labelled = ingest_images(root)
    assert bursts[0].event_id not in {i.event for i in labelled.images}
    assert labelled.left_out == {"machine-unusable label 'unknown'": 1}


# -- a labelled folder ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("folder") / "cards"
    write_bursts(path / "card1", 4, seed=5, frames=3, size=(320, 180))
    return path


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return path


def test_events_are_grouped_by_exif_time_without_an_event_column(folder, tmp_path):
    rows = [["file", "label"]] + [
        [f"card1/b{b:03d}_f{f}.jpg", "blank" if b % 2 else "red fox"]
        for b in range(4)
        for f in range(3)
    ]
    labelled = folder_images(folder, write_csv(tmp_path / "labels.csv", rows))
    events = {}
    for image in labelled.images:
        events.setdefault(image.event, set()).add(image.key.split("_")[0])
    assert len(events) == 4 and all(len(bursts) == 1 for bursts in events.values())
    assert "EXIF DateTimeOriginal" in labelled.event_rule


def test_the_hand_offs_automl_csv_is_matched_to_local_files(folder, tmp_path):
    rows = [
        ["gs://bucket/training/images/card1/b000_f0.jpg", "red_fox"],
        ["TRAINING", "/elsewhere/dest/card1/b000_f1.jpg", "red_fox"],
        ["gs://bucket/x/b001_f0.jpg", "blank"],  # found by its base name alone
        ["gs://bucket/x/not-there.jpg", "blank"],
        ["gs://bucket/x/b001_f1.jpg", "unknown"],
    ]
    labelled = folder_images(folder, write_csv(tmp_path / "automl_import.csv", rows))
    assert {i.key: i.cls.name for i in labelled.images} == {
        "card1/b000_f0.jpg": "red_fox",
        "card1/b000_f1.jpg": "red_fox",
        "card1/b001_f0.jpg": "blank",
    }
    assert labelled.left_out == {
        "file named in the labels but not found under the folder": 1,
        "machine-unusable label 'unknown'": 1,
    }


def test_labels_naming_no_existing_file_are_refused(folder, tmp_path):
    labels = write_csv(tmp_path / "labels.csv", [["file", "label"], ["nope.jpg", "blank"]])
    code, _, stderr = train("--images", folder, "--labels", labels, "--out", tmp_path / "h")
    assert code == 1
    assert f"{labels}: names 1 files and none of them is in {folder}" in stderr


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"file,label\ncard1/b000_f0.jpg,blank,extra\n", "line 2: 3 fields, the header has 2"),
        (b"\xff\xfe\x00garbage", "not a UTF-8 CSV file"),
        (b"just one column\n", "line 1: expected a header with file,label"),
        (b"", "empty (no labelled rows)"),
    ],
)
def test_a_bad_labels_file_is_one_line_naming_it(folder, tmp_path, content, says):
    labels = tmp_path / "labels.csv"
    labels.write_bytes(content)
    code, _, stderr = train("--images", folder, "--labels", labels, "--out", tmp_path / "h")
    assert code == 1
    assert stderr.startswith(f"camtrap-cloud train: {labels}") and says in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_an_unreadable_photo_is_counted_and_skipped(folder, tmp_path):
    broken = tmp_path / "cards"
    broken.mkdir()
    for path in sorted((folder / "card1").glob("*.jpg")):
        (broken / path.name).write_bytes(path.read_bytes())
    (broken / "b000_f0.jpg").write_bytes(b"not a jpeg at all")
    rows = [["file", "label", "event"]] + [
        [p.name, "blank" if p.name.startswith(("b001", "b003")) else "red fox", p.name[:4]]
        for p in sorted(broken.glob("*.jpg"))
    ]
    labels = write_csv(tmp_path / "labels.csv", rows)
    code, stdout, stderr = train(
        "--images", broken, "--labels", labels, "--out", tmp_path / "h", "--force",
        "--min-per-class", "1", "--cache", tmp_path / "cache",
    )  # fmt: skip
    assert code == 0, stderr
    assert "1 unreadable" in stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ([], "give a source: --root INGEST, or --images DIR with --labels labels.csv"),
        (["--images", "x"], "--images needs --labels labels.csv"),
        (["--images", "x", "--labels", "y", "--deployment", "d"], "select from --root"),
        (["--root", "r", "--target-recall", "1.5"], "--target-recall 1.5 is not between"),
        (["--root", "r", "--min-per-class", "9", "--max-per-class", "3"], "--min-per-class"),
    ],
)
def test_usage_mistakes_are_exit_2(tmp_path, args, says):
    code, _, stderr = train(*args, "--out", tmp_path / "h")
    assert code == 2
    assert says in stderr


def test_two_spellings_of_one_species_are_one_class(store, tmp_path):
    root, bursts = store
    root = copy_store(root, tmp_path / "ingest")
    cat = TAXA["domestic cat"]
    house_cat = cat.__class__(cat.scientific_name, "house cat", "species", cat.taxonomy)
    db = open_store_db(root, write=True)
    for burst, choice in zip(bursts[:3], [cat, house_cat, cat], strict=True):
        save_review(db, burst.event_id, username="alice", action="correct", choice=choice)
    db.close()
    labelled = ingest_images(root)
    assert len(labelled.classes()) == 1
    assert labelled.classes()[0].display == "domestic cat"  # what most photos were called


def test_a_taxonomy_column_gives_a_folders_animals_their_taxonomy(folder, tmp_path):
    rows = [
        ["file", "label", "taxonomy"],
        ["card1/b000_f0.jpg", "red fox", "mammalia;carnivora;canidae;vulpes;vulpes"],
        ["card1/b000_f1.jpg", "red fox", ""],
        ["card1/b001_f0.jpg", "blank", ""],
    ]
    labelled = folder_images(folder, write_csv(tmp_path / "labels.csv", rows))
    fox = next(c for c in labelled.classes() if c.kind == "animal")
    assert fox.taxonomy == "mammalia;carnivora;canidae;vulpes;vulpes"
    assert {i.cls for i in labelled.images if i.cls.kind == "animal"} == {fox}


def test_the_report_may_not_go_inside_the_pack(folder, tmp_path):
    labels = write_csv(tmp_path / "labels.csv", [["file", "label"], ["card1/b000_f0.jpg", "x"]])
    out = tmp_path / "head"
    code, _, stderr = train("--images", folder, "--labels", labels, "--out", out,
                            "--report", out / "report")  # fmt: skip
    assert code == 1 and "not inside --out" in stderr
    assert not out.exists()
