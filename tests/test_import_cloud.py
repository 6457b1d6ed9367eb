"""The cloud side of trail-camera imports: what ``camtrap import`` sends is stored, exported as
Camtrap DP and shown on the review page with where it came from.

Every world here goes through the real ingest (encoded messages, chunked files), the real
Camtrap DP export with frictionless validation, and the Flask review app on that store.
"""

from __future__ import annotations

import csv
import html
import json
import re
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from cloud_stub.cli import main as cloud_main
from cloud_stub.export import ExportError, Selection, run_export
from cloud_stub.export.validate import validate_package
from cloud_stub.ingest.core import Ingestor
from cloud_stub.ingest.store import EVENT_COLUMNS, IngestStore
from cloud_stub.review.app import ReviewConfig, create_app
from device.contracts import protocol
from device.contracts.protocol import ProtocolError
from tests.support.browser import PASSWORDS, add_users
from tests.support.import_messages import BROWNING, RECONYX, Card, Sent, feed, imported_capture
from tests.support.messages import capture

pytest.importorskip("frictionless")

DEVICE = "pi-importer-1"
EAT = timezone(timedelta(hours=3))  # the cameras were set to local time in Kenya
CAMERA_TIME = datetime(2025, 11, 3, 4, 12, 7, tzinfo=EAT)


def rows(root: Path, sql: str, *params: object) -> list[dict]:
    db = sqlite3.connect(root / "ingest.sqlite")
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute(sql, params)]
    finally:
        db.close()


def table(package: Path, name: str) -> list[dict[str, str]]:
    with (package / f"{name}.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def tags(text: str) -> dict[str, str]:
    """Camtrap DP ``key:value | key:value`` comments as a dict."""
    return dict(part.split(":", 1) for part in text.split(" | "))


def run_cli(argv: list[str]) -> int:
    """``camtrap-cloud`` as a shell sees it: argument errors exit through argparse."""
    try:
        return cloud_main(argv)
    except SystemExit as stop:
        return int(stop.code or 0)


def ingest(root: Path, sent: list[Sent], *, locate: dict[str, tuple[float, float]]) -> None:
    ingestor = Ingestor(root)
    try:
        for one in sent:
            feed(ingestor, one)
        ingestor.store.begin()
        for deployment, (lat, lon) in locate.items():
            # What a registry record gives the export: coordinates, and it names the camera.
            ingestor.store.record_deployment(deployment, DEVICE, latitude=lat, longitude=lon)
        ingestor.store.commit()
    finally:
        ingestor.close()


# -- one shared world: two cards, both starting at IMG_0001.JPG ------------------------------

NORTH = Card("SD-RCX-01", RECONYX, offset_s=-3725.0, method="offset")
CREEK = Card(
    "CREEK_2025",
    BROWNING,
    offset_s=95.5,
    method="reference",
    reference="IMG_0001.JPG=2025-11-03T04:13:42.500+03:00",
)
LOOSE = Card("SD-RCX-01", RECONYX)  # the same camera, imported again with no correction


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("import-cloud") / "ingest"
    north = imported_capture(DEVICE, NORTH, deployment_id="north-gate", camera_time=CAMERA_TIME)
    creek = imported_capture(
        DEVICE, CREEK, deployment_id="creek", camera_time=CAMERA_TIME, colour=(40, 90, 150)
    )
    mixed = [
        imported_capture(
            DEVICE, NORTH, deployment_id="mixed", camera_time=CAMERA_TIME, first_number=7
        ),
        imported_capture(
            DEVICE, CREEK, deployment_id="mixed", camera_time=CAMERA_TIME, first_number=7
        ),
    ]
    loose = imported_capture(
        DEVICE, LOOSE, deployment_id="loose", camera_time=CAMERA_TIME, first_number=20
    )
    own, own_files = capture(DEVICE, deployment_id="pi-own", frames=2)
    sent = [north, creek, *mixed, loose, Sent(own, own_files)]
    ingest(
        root,
        sent,
        locate={d: (-1.29, 36.82) for d in ("north-gate", "creek", "mixed", "loose", "pi-own")},
    )
    add_users(root)
    return {
        "root": root,
        "north": north,
        "creek": creek,
        "mixed": mixed,
        "loose": loose,
        "own": own,
    }


@pytest.fixture(scope="module")
def package(world: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("import-package") / "pkg"
    written = run_export(world["root"], out)
    assert written.validated
    return out


# -- the wire -------------------------------------------------------------------------------


def test_an_imported_capture_travels_as_v2_and_a_trap_capture_stays_v1(world):
    north: Sent = world["north"]
    wire = json.loads(protocol.encode(north.meta))
    assert wire["v"] == protocol.CAPTURE_VERSION == 2
    assert wire["event"]["camera"] == {
        "make": "RECONYX",
        "model": "HF2X",
        "serial": "H2X0917A",
        "name": "north-gate",
    }
    assert wire["event"]["imported"]["source"] == "SD-RCX-01"
    assert protocol.decode(protocol.encode(north.meta)) == north.meta
    assert json.loads(protocol.encode(world["own"]))["v"] == 1


def test_a_v1_capture_carrying_import_facts_is_refused():
    wire = json.loads(
        protocol.encode(
            imported_capture(DEVICE, NORTH, deployment_id="d", camera_time=CAMERA_TIME).meta
        )
    )
    wire["v"] = 1
    with pytest.raises(ProtocolError) as err:
        protocol.decode(json.dumps(wire).encode())
    assert err.value.reason == "invalid_fields"
    assert "need v=2" in err.value.detail


# -- ingest ---------------------------------------------------------------------------------


def test_ingest_keeps_the_camera_and_the_import_of_an_event(world):
    north: Sent = world["north"]
    (event,) = rows(
        world["root"], "SELECT * FROM events WHERE event_id = ?", north.meta.event.event_id
    )
    assert (event["camera_make"], event["camera_model"], event["camera_serial"]) == (
        "RECONYX",
        "HF2X",
        "H2X0917A",
    )
    assert event["camera_name"] == "north-gate"
    assert event["import_id"] == NORTH.import_id
    assert event["import_source"] == "SD-RCX-01"
    assert event["clock_offset_s"] == NORTH.offset_s
    assert event["clock_source"] == "trailcam+offset"


def test_ingest_keeps_the_card_file_name_and_the_original_exif(world):
    north: Sent = world["north"]
    stored = rows(
        world["root"],
        "SELECT file_name, exif_data, timestamp FROM media WHERE event_id = ? ORDER BY seq",
        north.meta.event.event_id,
    )
    assert [m["file_name"] for m in stored] == [m.file_name for m in north.meta.media]
    assert [json.loads(m["exif_data"]) for m in stored] == [m.exif_data for m in north.meta.media]
    first = json.loads(stored[0]["exif_data"])
    assert first["DateTimeOriginal"] == CAMERA_TIME.strftime("%Y:%m:%d %H:%M:%S")
    # The stored time is the corrected one, not the camera's.
    assert datetime.fromisoformat(stored[0]["timestamp"]) == CAMERA_TIME + timedelta(
        seconds=NORTH.offset_s
    )


def test_a_trap_capture_has_no_import_facts(world):
    (event,) = rows(
        world["root"], "SELECT * FROM events WHERE event_id = ?", world["own"].event.event_id
    )
    assert all(event[column] is None for column in EVENT_COLUMNS)


def test_two_cards_with_the_same_file_names_keep_both_photos(world):
    root = world["root"]
    north: Sent = world["north"]
    creek: Sent = world["creek"]
    assert north.meta.media[0].file_name == creek.meta.media[0].file_name == "IMG_0001.JPG"
    stored = rows(
        root,
        "SELECT media_id, file_path FROM media WHERE file_name = 'IMG_0001.JPG' ORDER BY media_id",
    )
    assert len(stored) == 2
    by_id = {m["media_id"]: m["file_path"] for m in stored}
    for sent in (north, creek):
        path = root / "media" / by_id[sent.meta.media[0].media_id]
        assert path.read_bytes() == sent.files[0]  # each card's own bytes, neither overwritten


def test_an_older_store_gains_the_import_columns_and_keeps_its_events(tmp_path):
    root = tmp_path / "ingest"
    own, files = capture(DEVICE, frames=1)
    ingest(root, [Sent(own, files)], locate={})
    db = sqlite3.connect(root / "ingest.sqlite")
    for column in EVENT_COLUMNS:  # what a store made before imports existed looks like
        db.execute(f"ALTER TABLE events DROP COLUMN {column}")
    db.execute("DROP TABLE schema_migrations")  # ... and before its steps were recorded
    db.commit()
    db.close()

    IngestStore(root).close()

    (event,) = rows(root, "SELECT * FROM events")
    assert event["event_id"] == own.event.event_id
    assert set(EVENT_COLUMNS) <= set(event) and all(event[c] is None for c in EVENT_COLUMNS)


# -- Camtrap DP export ----------------------------------------------------------------------


def test_the_exported_package_with_imported_events_is_valid(package):
    result = validate_package(package / "datapackage.json")
    assert result.valid, result.summary()


def test_media_carry_the_card_file_name_the_sent_exif_and_the_corrected_time(world, package):
    media = {m["mediaID"]: m for m in table(package, "media")}
    for sent in (world["north"], world["creek"]):
        for m in sent.meta.media:
            row = media[m.media_id]
            assert row["fileName"] == m.file_name
            assert json.loads(row["exifData"]) == m.exif_data
            assert datetime.fromisoformat(row["timestamp"]) == m.timestamp.replace(microsecond=0)
            assert row["filePath"] == f"media/{m.deployment_id}/{m.media_id}.jpg"
    assert (
        len(
            {media[m.media_id]["filePath"] for s in ("north", "creek") for m in world[s].meta.media}
        )
        == 6
    )


def test_media_comments_say_how_the_clock_was_corrected_and_where_the_photo_came_from(
    world, package
):
    media = {m["mediaID"]: tags(m["mediaComments"]) for m in table(package, "media")}
    north = media[world["north"].meta.media[0].media_id]
    assert north["clockCorrection"] == "-01:02:05"
    assert north["clockSource"] == "trailcam+offset"
    assert north["importedFrom"] == "SD-RCX-01"
    creek = media[world["creek"].meta.media[0].media_id]
    assert creek["clockCorrection"] == (
        "+00:01:35.500 from reference photo IMG_0001.JPG=2025-11-03T04:13:42.500+03:00"
    )
    loose = media[world["loose"].meta.media[0].media_id]
    assert "clockCorrection" not in loose and loose["clockSource"] == "trailcam"
    own = media[world["own"].media[0].media_id]
    assert "clockCorrection" not in own and "importedFrom" not in own


def test_a_deployment_of_one_imported_camera_takes_its_make_model_and_serial(package):
    deployments = {d["deploymentID"]: d for d in table(package, "deployments")}
    north = deployments["north-gate"]
    assert north["cameraModel"] == "RECONYX-HF2X"
    # The registry record (``record_deployment`` in this world) named the uploading device.
    assert north["cameraID"] == DEVICE
    assert north["deploymentComments"].startswith(
        '1 event(s) imported from RECONYX-HF2X serial H2X0917A named "north-gate"'
    )
    creek = deployments["creek"]
    assert creek["cameraModel"] == "Browning-BTC-8E"


def test_several_cameras_on_one_deployment_leave_the_model_empty_and_say_why(package):
    mixed = {d["deploymentID"]: d for d in table(package, "deployments")}["mixed"]
    assert mixed["cameraModel"] == ""
    comment = mixed["deploymentComments"]
    assert "RECONYX-HF2X serial H2X0917A" in comment and "Browning-BTC-8E" in comment
    assert "several cameras, so cameraModel is left empty" in comment


def test_timestamp_issues_only_where_an_imported_clock_was_not_corrected(package):
    issues = {d["deploymentID"]: d["timestampIssues"] for d in table(package, "deployments")}
    assert issues["loose"] == "true"  # "trailcam": the camera's hand-set time, as it was
    assert issues["north-gate"] == "false"  # shifted by the technician's offset
    assert issues["creek"] == "false"  # measured against a reference photo
    assert issues["pi-own"] == "false"  # the trap's own synced clock


def test_the_registry_camera_model_wins_over_the_imported_one(tmp_path):
    root = tmp_path / "ingest"
    sent = imported_capture(DEVICE, NORTH, deployment_id="trap-site", camera_time=CAMERA_TIME)
    ingest(root, [sent], locate={"trap-site": (51.05, 3.72)})
    store = IngestStore(root)
    store.record_deployment("trap-site", DEVICE, camera_model="camtrap Raspberry Pi camera trap")
    store.close()

    (dep,) = table(run_export(root, tmp_path / "pkg").descriptor.parent, "deployments")

    assert dep["cameraModel"] == "camtrap Raspberry Pi camera trap"
    assert dep["cameraID"] == DEVICE
    assert (
        "cameraModel is the registry's and cameraID is the registry's" in dep["deploymentComments"]
    )


def test_without_a_registry_record_the_camera_serial_is_the_camera_id(tmp_path):
    root = tmp_path / "ingest"
    sent = imported_capture(DEVICE, NORTH, deployment_id="rcx-17", camera_time=CAMERA_TIME)
    ingest(root, [sent], locate={})
    assert (
        cloud_main(
            [
                "export",
                "locate",
                "rcx-17",
                "--root",
                str(root),
                "--latitude",
                "-2.33",
                "--longitude",
                "34.83",
            ]
        )
        == 0
    )

    (dep,) = table(run_export(root, tmp_path / "pkg").descriptor.parent, "deployments")

    assert dep["cameraID"] == "H2X0917A"
    assert dep["cameraModel"] == "RECONYX-HF2X"
    assert (dep["latitude"], dep["longitude"]) == ("-2.33", "34.83")


# -- a deployment no trap was provisioned for ------------------------------------------------


@pytest.fixture
def unprovisioned(tmp_path: Path) -> Path:
    root = tmp_path / "ingest"
    sent = [
        imported_capture(DEVICE, NORTH, deployment_id="rcx-17", camera_time=CAMERA_TIME),
        imported_capture(DEVICE, NORTH, deployment_id="pi-site", camera_time=CAMERA_TIME),
    ]
    ingest(root, sent, locate={"pi-site": (51.05, 3.72)})
    return root


def test_an_unlocated_imported_deployment_is_named_in_one_line_with_the_way_out(
    unprovisioned, tmp_path, capsys
):
    code = cloud_main(["export", "camtrap-dp", str(tmp_path / "pkg"), "--root", str(unprovisioned)])

    err = capsys.readouterr().err
    assert code == 1
    assert len(err.strip().splitlines()) == 1
    assert "rcx-17 (imported from SD-RCX-01; no trap was provisioned for it)" in err
    assert "camtrap-cloud export locate" in err
    assert not (tmp_path / "pkg").exists()  # no half package


def test_leaving_the_unlocated_import_out_still_gives_a_valid_package(unprovisioned, tmp_path):
    written = run_export(unprovisioned, tmp_path / "pkg", selection=Selection(skip_unlocated=True))

    assert validate_package(written.descriptor).valid
    assert [d["deploymentID"] for d in table(written.descriptor.parent, "deployments")] == [
        "pi-site"
    ]
    assert any("rcx-17" in note for note in written.notes)


def test_locating_the_imported_deployment_makes_it_exportable(unprovisioned, tmp_path, capsys):
    code = cloud_main(
        [
            "export",
            "locate",
            "rcx-17",
            "--root",
            str(unprovisioned),
            "--latitude",
            "-2.33",
            "--longitude",
            "34.83",
            "--coordinate-uncertainty",
            "30",
            "--location-name",
            "Mara north gate",
        ]
    )
    assert code == 0, capsys.readouterr().err

    written = run_export(unprovisioned, tmp_path / "pkg")

    assert validate_package(written.descriptor).valid
    deployments = {d["deploymentID"]: d for d in table(written.descriptor.parent, "deployments")}
    assert deployments["rcx-17"]["coordinateUncertainty"] == "30"
    assert deployments["rcx-17"]["locationName"] == "Mara north gate"


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["nowhere", "--latitude", "1", "--longitude", "1"], 2, "no deployment 'nowhere'"),
        (["rcx-17", "--latitude", "91", "--longitude", "1"], 2, "must be a number from -90 to 90"),
        (["rcx-17", "--latitude", "x", "--longitude", "1"], 2, "must be a number from -90 to 90"),
        (
            ["rcx-17", "--latitude", "1", "--longitude", "1", "--coordinate-uncertainty", "0"],
            2,
            "at least 1",
        ),
    ],
    ids=["unknown-deployment", "latitude-out-of-range", "latitude-not-a-number", "zero-metres"],
)
def test_locate_refuses_bad_input_in_one_line(unprovisioned, capsys, args, code, says):
    assert run_cli(["export", "locate", *args, "--root", str(unprovisioned)]) == code
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1
    with pytest.raises(ExportError):  # nothing was recorded
        run_export(unprovisioned, unprovisioned.parent / "pkg")


def test_locate_on_a_missing_store_names_it_and_creates_nothing(tmp_path, capsys):
    root = tmp_path / "typo"
    code = cloud_main(
        ["export", "locate", "rcx-17", "--root", str(root), "--latitude", "1", "--longitude", "1"]
    )
    assert code == 66
    assert "no ingest store at" in capsys.readouterr().err
    assert not root.exists()


# -- review page ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def viewer(world: dict):
    app = create_app(ReviewConfig(world["root"], secure_cookies=False))
    client = app.test_client()
    page = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post(
        "/login",
        data={"username": "vera", "password": PASSWORDS["vera"][1], "csrf_token": token},
    )
    assert response.status_code == 302
    return client


def test_the_event_page_says_which_camera_and_card_and_the_clock_correction(world, viewer):
    page = viewer.get(f"/events/{world['creek'].meta.event.event_id}").text
    panel = re.search(
        r'<div class="panel" id="source">(.*?)</div>\s*<div class="panel"', page, re.S
    )
    assert panel, "no source panel"
    text = re.sub(r"\s+", " ", html.unescape(panel.group(1)))
    assert 'Browning-BTC-8E named "creek"' in text
    assert "imported from card CREEK_2025" in text
    assert "corrected +00:01:35.500 from reference photo IMG_0001.JPG" in text
    assert "(IMG_0001.JPG)" in page  # each frame's original name on the card


def test_an_uncorrected_import_is_flagged_on_the_event_page(world, viewer):
    page = viewer.get(f"/events/{world['loose'].meta.event.event_id}").text
    assert "not corrected" in page


def test_a_trap_capture_page_has_no_import_panel(world, viewer):
    page = viewer.get(f"/events/{world['own'].event.event_id}").text
    assert 'id="prediction"' in page and 'id="source"' not in page


def test_the_event_api_returns_the_camera_import_and_original_names(world, viewer):
    north: Sent = world["north"]
    response = viewer.get(f"/api/events/{north.meta.event.event_id}")
    assert response.status_code == 200
    body = response.get_json()
    imported = body["imported"]
    assert imported["camera"] == {
        "make": "RECONYX",
        "model": "HF2X",
        "serial": "H2X0917A",
        "name": "north-gate",
        "label": 'RECONYX-HF2X serial H2X0917A named "north-gate"',
    }
    assert imported["source"] == "SD-RCX-01"
    assert imported["importID"] == NORTH.import_id
    assert imported["clockOffsetS"] == NORTH.offset_s
    assert imported["clockCorrection"] == "-01:02:05"
    assert imported["timestampIssues"] is False
    assert [m["fileName"] for m in body["media"]] == [m.file_name for m in north.meta.media]
    assert body["media"][0]["exifData"] == north.meta.media[0].exif_data
    assert body["media"][0]["received"] == {"full": True, "thumbnail": True}


def test_the_event_api_of_a_trap_capture_has_no_import_and_unknown_events_are_404(world, viewer):
    assert viewer.get(f"/api/events/{world['own'].event.event_id}").get_json()["imported"] is None
    missing = viewer.get("/api/events/no-such-event")
    assert missing.status_code == 404 and "no-such-event" in missing.get_json()["error"]


def test_the_event_api_needs_a_session(world):
    anonymous = create_app(ReviewConfig(world["root"], secure_cookies=False)).test_client()
    response = anonymous.get(
        f"/api/events/{world['own'].event.event_id}", headers={"Accept": "application/json"}
    )
    assert response.status_code == 401


def test_the_fleet_page_counts_imported_events_per_deployment(world, viewer):
    page = viewer.get("/fleet").text
    table_html = re.search(r'<table id="imported">(.*?)</table>', page, re.S).group(1)
    cells = {
        re.search(r">([^<]+)</a>", row).group(1): re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        for row in re.findall(r"<tr>(.*?)</tr>", table_html, re.S)
        if "<a " in row
    }
    assert set(cells) == {"north-gate", "creek", "mixed", "loose"}  # not the trap's own
    assert cells["mixed"][2] == "2"
    assert "RECONYX-HF2X" in cells["mixed"][3] and "Browning-BTC-8E" in cells["mixed"][3]
    assert cells["north-gate"][4] == "SD-RCX-01"


def test_an_older_store_without_import_columns_still_exports_and_serves(tmp_path):
    root = tmp_path / "ingest"
    own, files = capture(DEVICE, deployment_id="pi-own", frames=1)
    ingest(root, [Sent(own, files)], locate={"pi-own": (51.05, 3.72)})
    db = sqlite3.connect(root / "ingest.sqlite")
    for column in EVENT_COLUMNS:
        db.execute(f"ALTER TABLE events DROP COLUMN {column}")
    db.commit()
    db.close()
    # Read-only readers never migrate: the export and the page must cope as they are.
    assert run_export(root, tmp_path / "pkg").validated
    add_users(root)
    app = create_app(ReviewConfig(root, secure_cookies=False))
    client = app.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
    client.post(
        "/login", data={"username": "vera", "password": PASSWORDS["vera"][1], "csrf_token": token}
    )
    assert client.get("/fleet").status_code == 200
    assert client.get(f"/api/events/{own.event.event_id}").get_json()["imported"] is None
    assert "event_id" in rows(root, "SELECT * FROM events")[0]
    assert "import_id" not in rows(root, "SELECT * FROM events")[0]
