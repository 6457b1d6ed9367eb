"""Camtrap DP export: what ingest stored becomes a valid, honest Camtrap DP 1.0.2 package."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cloud_stub.cli import main as cloud_main
from cloud_stub.export import ExportError, Selection, export_camtrap_dp, run_export
from cloud_stub.export.validate import validate_package
from tests.support.cloud_data import T0, Site, add_review, fill_store, unwritable_dir

pytest.importorskip("frictionless")


def rows(package: Path, table: str) -> list[dict[str, str]]:
    with (package / f"{table}.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def two_sites(tmp_path: Path):
    root = tmp_path / "ingest"
    sites = [
        Site("dep-a", "trap-1"),
        Site(
            "dep-b",
            "trap-2",
            51.2,
            4.1,
            {"habitat": "woodland edge", "camera_height": 0.8, "camera_tilt": -10, "bait_use": 0},
        ),
    ]
    return fill_store(root, sites, captures=5, frames=2)


def test_export_of_a_store_is_a_valid_package_with_every_capture(two_sites, tmp_path):
    descriptor = export_camtrap_dp(two_sites.root, tmp_path / "pkg")

    assert descriptor == (tmp_path / "pkg" / "datapackage.json").absolute()
    assert validate_package(descriptor).valid
    package = descriptor.parent
    media = rows(package, "media")
    assert {m["mediaID"] for m in media} == set(two_sites.media)
    for m in media:  # every file the package names is in the package
        assert (package / m["filePath"]).is_file()
    observations = rows(package, "observations")
    assert len(observations) == len(two_sites.observations)
    assert {o["classificationMethod"] for o in observations} == {"machine"}
    deployments = {d["deploymentID"]: d for d in rows(package, "deployments")}
    assert deployments["dep-b"]["habitat"] == "woodland edge"
    assert deployments["dep-b"]["cameraTilt"] == "-10"
    assert deployments["dep-b"]["baitUse"] == "false"


def test_package_carries_the_required_properties(two_sites, tmp_path):
    descriptor = json.loads(export_camtrap_dp(two_sites.root, tmp_path / "pkg").read_text())

    for key in ("profile", "created", "contributors", "project", "spatial", "temporal"):
        assert descriptor[key]
    assert descriptor["profile"].endswith("/1.0.2/camtrap-dp-profile.json")
    assert datetime.fromisoformat(descriptor["created"]).tzinfo is not None
    west, south, east, north = descriptor["spatial"]["bbox"]
    assert (west, south, east, north) == (3.72, 51.05, 4.1, 51.2)
    assert descriptor["temporal"]["start"] == T0.date().isoformat()
    names = {t["scientificName"] for t in descriptor["taxonomic"]}
    stored = {o["scientific_name"] for o in two_sites.observations if o["scientific_name"]}
    assert names == stored


def test_every_datetime_carries_an_offset(two_sites, tmp_path):
    package = export_camtrap_dp(two_sites.root, tmp_path / "pkg").parent
    columns = {
        "deployments": ("deploymentStart", "deploymentEnd"),
        "media": ("timestamp",),
        "observations": ("eventStart", "eventEnd", "classificationTimestamp"),
    }
    for table, names in columns.items():
        for row in rows(package, table):
            for name in names:
                if row[name]:
                    assert datetime.fromisoformat(row[name]).utcoffset() is not None, row[name]


def test_human_label_is_preferred_over_the_machine_label(two_sites, tmp_path):
    machine = next(o for o in two_sites.observations if o["observation_type"] == "animal")
    earlier = add_review(
        two_sites.root, machine, scientific_name="Felis catus", at=datetime(2026, 6, 1, tzinfo=UTC)
    )
    later = add_review(
        two_sites.root, machine, scientific_name="Martes foina", at=datetime(2026, 6, 2, tzinfo=UTC)
    )

    package = export_camtrap_dp(two_sites.root, tmp_path / "pkg").parent

    observations = {o["observationID"]: o for o in rows(package, "observations")}
    assert machine["observation_id"] not in observations  # superseded, not duplicated
    assert earlier not in observations  # a correction of a correction: the latest wins
    human = observations[later]
    assert human["classificationMethod"] == "human"
    assert human["classifiedBy"] == "alice"
    assert human["scientificName"] == "Martes foina"
    assert human["mediaID"] == machine["media_id"]
    assert f"reviews:{machine['observation_id']}" in human["observationTags"]
    assert len(observations) == len(two_sites.observations)  # every other row kept
    assert validate_package(package / "datapackage.json").valid


def test_deployment_without_coordinates_is_refused_by_name(tmp_path):
    filled = fill_store(tmp_path / "ingest", [Site("dep-a", "t1"), Site("dep-x", "t2", None, None)])

    with pytest.raises(ExportError, match="dep-x") as caught:
        export_camtrap_dp(filled.root, tmp_path / "pkg")

    assert "latitude and longitude" in str(caught.value)
    assert not (tmp_path / "pkg").exists()
    assert list(tmp_path.glob(".pkg.partial-*")) == []


def test_skip_unlocated_exports_the_rest_and_says_what_it_left_out(tmp_path):
    filled = fill_store(tmp_path / "ingest", [Site("dep-a", "t1"), Site("dep-x", "t2", None, None)])

    written = run_export(filled.root, tmp_path / "pkg", selection=Selection(skip_unlocated=True))

    assert validate_package(written.descriptor).valid
    assert {d["deploymentID"] for d in rows(written.descriptor.parent, "deployments")} == {"dep-a"}
    assert any("dep-x" in note for note in written.notes)


def test_filters_by_deployment_and_time_window(two_sites, tmp_path):
    since = T0 + timedelta(minutes=60)
    until = T0 + timedelta(minutes=120)
    selection = Selection(deployments=("dep-b",), since=since, until=until)

    written = run_export(two_sites.root, tmp_path / "pkg", selection=selection)

    media = rows(written.descriptor.parent, "media")
    assert media and {m["deploymentID"] for m in media} == {"dep-b"}
    for m in media:
        assert since <= datetime.fromisoformat(m["timestamp"]) < until + timedelta(seconds=5)
    assert validate_package(written.descriptor).valid


def test_unknown_deployment_is_a_clear_error(two_sites, tmp_path):
    with pytest.raises(ExportError, match="no such deployment"):
        run_export(two_sites.root, tmp_path / "pkg", selection=Selection(deployments=("nope",)))


def test_media_as_urls_instead_of_copies(two_sites, tmp_path):
    selection = Selection(media_url_prefix="https://media.example.org/camtrap/", public=True)

    written = run_export(two_sites.root, tmp_path / "pkg", selection=selection)

    package = written.descriptor.parent
    assert not (package / "media").exists()
    for m in rows(package, "media"):
        assert m["filePath"].startswith("https://media.example.org/camtrap/")
        assert m["filePublic"] == "true"
    assert validate_package(written.descriptor).valid


def test_thumbnail_only_and_missing_files_are_reported_not_hidden(tmp_path):
    thumbs = fill_store(tmp_path / "a", [Site("dep-a", "t1")], files="thumbnail")
    written = run_export(thumbs.root, tmp_path / "pkg-a")
    assert any("thumbnail" in note for note in written.notes)
    assert all("thumbnail only" in m["mediaComments"] for m in rows(tmp_path / "pkg-a", "media"))

    none = fill_store(tmp_path / "b", [Site("dep-b", "t2")], files="none")
    written = run_export(none.root, tmp_path / "pkg-b")
    assert rows(tmp_path / "pkg-b", "media") == []
    assert any("never uploaded" in note for note in written.notes)
    assert validate_package(written.descriptor).valid


def test_empty_store_gives_a_clear_error_and_no_package(tmp_path):
    from cloud_stub.ingest.store import IngestStore

    IngestStore(tmp_path / "ingest").close()

    with pytest.raises(ExportError, match="nothing to export"):
        export_camtrap_dp(tmp_path / "ingest", tmp_path / "pkg")
    assert not (tmp_path / "pkg").exists()


def test_missing_store_is_a_clear_error(tmp_path):
    with pytest.raises(ExportError, match="no ingest store"):
        export_camtrap_dp(tmp_path / "nothing-here", tmp_path / "pkg")


def test_unwritable_destination_is_a_clear_error_and_leaves_nothing(two_sites, tmp_path):
    with unwritable_dir(tmp_path / "locked") as locked:
        with pytest.raises(ExportError, match="cannot write"):
            export_camtrap_dp(two_sites.root, locked / "pkg")
        assert not (locked / "pkg").exists()


def test_existing_package_is_kept_unless_overwrite(two_sites, tmp_path):
    first = export_camtrap_dp(two_sites.root, tmp_path / "pkg")
    created = json.loads(first.read_text())["id"]

    with pytest.raises(ExportError, match="not empty"):
        export_camtrap_dp(two_sites.root, tmp_path / "pkg")
    assert json.loads(first.read_text())["id"] == created

    export_camtrap_dp(two_sites.root, tmp_path / "pkg", overwrite=True)
    assert json.loads(first.read_text())["id"] != created
    assert validate_package(first).valid


def test_an_invalid_row_stops_the_export_before_anything_is_published(two_sites, tmp_path):
    import sqlite3

    db = sqlite3.connect(two_sites.root / "ingest.sqlite")
    db.execute("UPDATE deployments SET latitude = 123.0 WHERE deployment_id = 'dep-a'")
    db.commit()
    db.close()

    with pytest.raises(ExportError, match="latitude"):
        export_camtrap_dp(two_sites.root, tmp_path / "pkg")
    assert not (tmp_path / "pkg").exists()
    assert list(tmp_path.glob(".pkg.partial-*")) == []


def test_cli_prints_the_package_path_and_fails_cleanly(two_sites, tmp_path, capsys):
    out = tmp_path / "pkg"
    assert cloud_main(["export", "camtrap-dp", str(out), "--root", str(two_sites.root)]) == 0
    printed = capsys.readouterr().out
    assert str(out.absolute() / "datapackage.json") in printed
    assert "validated" in printed

    assert cloud_main(["export", "validate", str(out)]) == 0
    assert (
        cloud_main(
            ["export", "camtrap-dp", str(tmp_path / "x"), "--root", str(tmp_path / "missing")]
        )
        == 1
    )
    assert "no ingest store" in capsys.readouterr().err


def test_vendored_schemas_are_the_official_ones():
    shared = Path(__file__).resolve().parents[2] / "shared" / "camtrap-dp-1.0.2"
    if not shared.is_dir():
        pytest.skip(f"the official Camtrap DP 1.0.2 copy is not at {shared}")
    vendored = Path(__file__).resolve().parents[1] / "cloud_stub" / "export" / "schemas"
    for name in (
        "camtrap-dp-profile.json",
        "deployments-table-schema.json",
        "media-table-schema.json",
        "observations-table-schema.json",
    ):
        assert (vendored / name).read_bytes() == (shared / name).read_bytes(), name


HEAD_CLASSIFIED_BY = "efficientnet-lite0-imagenet@1.0.0+head-x@1.0.0"


def test_an_observation_classified_by_a_head_keeps_backbone_and_head_in_classified_by(tmp_path):
    """Provenance through the real ingest path: a trap serving a head sends classified_by
    "backbone@v+head@v" on every machine observation; the package carries it unchanged."""
    import hashlib

    from cloud_stub.ingest.core import Incoming, Ingestor
    from device.protocol import CaptureMeta, Event, Media, Observation, encode, split_media
    from tests.support.world import jpeg_bytes

    root = tmp_path / "ingest"
    picture = jpeg_bytes(64, 48, seed=3)
    event = Event(
        event_id="ev-head-1",
        deployment_id="dep-h",
        capture_method="activityDetection",
        trigger_source="pir",
        event_start=T0,
        event_end=T0 + timedelta(seconds=1),
        frame_count=1,
        clock_source="ntp",
        clock_synced=True,
        blank_score=0.1,
    )
    media = Media(
        media_id="me-head-1",
        event_id=event.event_id,
        deployment_id="dep-h",
        seq=0,
        capture_method="activityDetection",
        timestamp=T0,
        file_name="IMG_0000.jpg",
        sha256=hashlib.sha256(picture).hexdigest(),
        size=len(picture),
        width=64,
        height=48,
        clock_source="ntp",
        clock_synced=True,
    )
    observations = [
        Observation(
            observation_id=f"ob-head-{level}",
            deployment_id="dep-h",
            event_id=event.event_id,
            media_id=media.media_id if level == "media" else None,
            event_start=T0,
            event_end=T0 + timedelta(seconds=1),
            observation_level=level,
            observation_type="animal",
            scientific_name="Felis catus",
            common_name="domestic cat",
            taxon_level="species",
            taxonomy="mammalia;carnivora;felidae;felis;catus",
            count=1,
            classified_by=HEAD_CLASSIFIED_BY,
            classification_timestamp=T0,
            classification_probability=0.91,
            blank_score=0.1,
        )
        for level in ("event", "media")
    ]
    meta = CaptureMeta(
        device_id="trap-h",
        item_id=f"capture:{event.event_id}",
        event=event,
        media=[media],
        observations=observations,
    )
    ingestor = Ingestor(root)
    try:
        messages = [("meta", encode(meta))] + [
            ("media", encode(chunk))
            for chunk in split_media(
                picture,
                max_payload_bytes=64 * 1024,
                device_id="trap-h",
                item_id=f"full:{media.media_id}",
                media_id=media.media_id,
                kind="full",
            )
        ]
        for subtopic, payload in messages:
            outcome = ingestor.handle(
                Incoming(f"camtrap/trap-h/up/{subtopic}", "trap-h", subtopic, payload)
            )
            assert outcome.rejected is None, outcome.rejected
        ingestor.store.record_deployment("dep-h", "trap-h", latitude=-2.33, longitude=34.83)
    finally:
        ingestor.close()

    descriptor = export_camtrap_dp(root, tmp_path / "pkg")

    assert validate_package(descriptor).valid
    exported = rows(descriptor.parent, "observations")
    assert {o["observationID"] for o in exported} == {"ob-head-event", "ob-head-media"}
    assert {o["classifiedBy"] for o in exported} == {HEAD_CLASSIFIED_BY}
    assert {o["classificationMethod"] for o in exported} == {"machine"}
