"""An imported event on the wire: what the trap's uplink sends of a photo from a trail camera's
card, built through the real store (``MediaStore`` + ``Importer`` on a folder of trail-camera
JPEGs, then ``payloads.capture_meta`` on the store's database), and what the cloud keeps of it.

An imported event names its camera and its import and travels as capture v2; each photo keeps
its name on the card and its original EXIF, and its timestamp is the corrected one. A capture
of the trap's own stays v1, with none of these fields, so it still reaches a v1-only ingest.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from cloud_stub.export import run_export
from cloud_stub.ingest.core import Ingestor
from device.contracts import protocol
from device.contracts.protocol import CaptureMeta
from device.importer.engine import Importer, ImportOutcome, ImportRequest
from device.store.media import Media as MediaTable
from device.store.store import MediaStore
from device.uplink.payloads import capture_meta, media_file
from tests.support.import_messages import Sent, feed
from tests.support.trailcam import exif_time, hyperfire_note, trailcam_jpeg
from tests.support.trap_db import Burst, open_store, queue_captures
from tests.support.world import trap_settings

DEVICE = "trap-importer"
DEPLOYMENT = "north-gate-2025"  # the trail camera's deployment (camtrap import --deployment)
OWN_DEPLOYMENT = "pi-own"  # the trap's own
CARD_LABEL = "SD-NORTH"
EAT = timezone(timedelta(hours=3))  # the camera was set to local time in Kenya
CAMERA_TIME = datetime(2025, 11, 3, 4, 12, 7)  # what the camera's clock read at the first shot
SERIAL = "H600HH07654321"
CAMERA_NAME = "north-gate"
CLOCK_OFFSET = "-00:04:30"  # the camera ran 4 min 30 s fast
OFFSET_S = -270.0
NAMES = ["IMG_0001.JPG", "IMG_0002.JPG", "IMG_0003.JPG"]


@dataclass
class Wire:
    store: MediaStore
    card: Path
    outcome: ImportOutcome
    imported: CaptureMeta
    own: CaptureMeta
    own_burst: Burst


def write_card(folder: Path) -> None:
    """One HyperFire burst "1 of 3" .. "3 of 3", a second apart, with the camera's offset."""
    folder.mkdir(parents=True)
    for seq, name in enumerate(NAMES):
        shot = CAMERA_TIME + timedelta(seconds=seq)
        (folder / name).write_bytes(
            trailcam_jpeg(
                taken_at=shot,
                offset="+03:00",
                serial=SERIAL,
                maker_note=hyperfire_note(taken_at=shot, sequence=(seq + 1, 3), event_number=7),
                seed=seq,
            )
        )


@pytest.fixture(scope="module")
def wire(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("import-wire")
    settings = trap_settings(root, device={"id": DEVICE, "deployment_id": OWN_DEPLOYMENT})
    card = root / CARD_LABEL
    write_card(card / "DCIM" / "100RECNX")
    store = open_store(settings)
    try:
        outcome = Importer(settings, store).run(
            ImportRequest(card, DEPLOYMENT, camera=CAMERA_NAME, clock_offset=CLOCK_OFFSET)
        )
        (event_id,) = outcome.closed_events
        assert store.db is not None
        imported = capture_meta(store.db, DEVICE, f"meta:{event_id}", event_id, vision=False)
        (own_burst,) = queue_captures(store, 1, frames=2)
        own = capture_meta(
            store.db, DEVICE, f"meta:{own_burst.event_id}", own_burst.event_id, vision=False
        )
        yield Wire(store, card, outcome, imported, own, own_burst)
    finally:
        store.close()


def stored_bytes(store: MediaStore, meta: CaptureMeta) -> list[bytes]:
    """The full-resolution files the uplink sends for ``meta``, in seq order, read through its
    own door (``payloads.media_file``)."""
    assert store.db is not None
    rows = MediaTable(store.db)
    return [
        media_file(store.data_dir, rows.get(m.media_id), "full", m.media_id).data
        for m in meta.media
    ]


# -- the device's message ---------------------------------------------------------------------


def test_an_imported_event_names_its_camera_make_model_serial_and_the_given_name(wire):
    camera = wire.imported.event.camera
    assert camera is not None
    assert (camera.make, camera.model, camera.serial, camera.name) == (
        "RECONYX",
        "HC600 HYPERFIRE",
        SERIAL,
        CAMERA_NAME,
    )


def test_an_imported_event_names_its_import_the_card_and_the_clock_offset(wire):
    imported = wire.imported.event.imported
    assert imported is not None
    assert imported.import_id == wire.outcome.import_id
    assert imported.source == CARD_LABEL
    assert imported.clock_offset_s == OFFSET_S
    assert wire.imported.event.clock_source == "trailcam+offset"


def test_each_photo_keeps_its_card_name_and_its_original_exif_with_the_maker_note(wire):
    media = wire.imported.media
    assert [m.file_name for m in media] == NAMES
    for seq, m in enumerate(media):
        assert m.exif_data is not None
        # The camera's own time, as it wrote it: the correction does not rewrite it.
        assert m.exif_data["DateTimeOriginal"] == exif_time(CAMERA_TIME + timedelta(seconds=seq))
        assert m.exif_data["Make"] == "RECONYX"
        assert m.exif_data["MakerNotes"]["sequence"] == [seq + 1, 3]
        assert m.exif_data["MakerNotes"]["eventNumber"] == 7
        assert m.exif_data["camtrapClockCorrection"] == {"offsetS": OFFSET_S, "method": "offset"}


def test_timestamps_are_the_camera_times_shifted_by_the_clock_offset(wire):
    first = CAMERA_TIME.replace(tzinfo=EAT) + timedelta(seconds=OFFSET_S)
    assert [m.timestamp for m in wire.imported.media] == [
        first + timedelta(seconds=seq) for seq in range(len(NAMES))
    ]
    assert wire.imported.event.event_start == first
    assert wire.imported.event.event_end == first + timedelta(seconds=len(NAMES) - 1)


def test_the_photos_that_travel_are_the_cards_bytes(wire):
    card = [p.read_bytes() for p in sorted((wire.card / "DCIM" / "100RECNX").iterdir())]
    assert stored_bytes(wire.store, wire.imported) == card
    assert [m.size for m in wire.imported.media] == [len(b) for b in card]


def test_an_imported_capture_encodes_as_v2_and_decodes_to_the_same_message(wire):
    encoded = protocol.encode(wire.imported)
    body = json.loads(encoded)
    assert body["v"] == protocol.CAPTURE_VERSION == 2
    assert body["event"]["camera"]["serial"] == SERIAL
    assert body["event"]["imported"]["source"] == CARD_LABEL
    assert protocol.decode(encoded) == wire.imported


def test_a_capture_of_the_traps_own_stays_v1_with_no_import_facts(wire):
    own = wire.own
    body = json.loads(protocol.encode(own))
    assert body["v"] == 1
    assert own.event.camera is None and own.event.imported is None
    assert body["event"].get("camera") is None and body["event"].get("imported") is None
    assert [m.file_name for m in own.media] == [f"{m}.jpg" for m in wire.own_burst.media_ids]
    assert all(m.exif_data is None for m in own.media)
    assert protocol.decode(protocol.encode(own)) == own


# -- what the cloud keeps of it ---------------------------------------------------------------


@pytest.fixture(scope="module")
def package(wire, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both messages through the real ingest (chunked files), then a Camtrap DP export."""
    pytest.importorskip("frictionless")
    root = tmp_path_factory.mktemp("import-wire-cloud") / "ingest"
    ingestor = Ingestor(root)
    try:
        for meta in (wire.imported, wire.own):
            feed(ingestor, Sent(meta, stored_bytes(wire.store, meta)))
        ingestor.store.begin()
        for deployment in (DEPLOYMENT, OWN_DEPLOYMENT):
            ingestor.store.record_deployment(deployment, DEVICE, latitude=-1.29, longitude=36.82)
        ingestor.store.commit()
    finally:
        ingestor.close()
    out = tmp_path_factory.mktemp("import-wire-package") / "pkg"
    assert run_export(root, out).validated
    return out


def media_rows(package: Path) -> dict[str, dict[str, str]]:
    with (package / "media.csv").open(newline="") as handle:
        return {row["mediaID"]: row for row in csv.DictReader(handle)}


def test_the_exported_media_carry_the_card_name_the_original_exif_and_the_corrected_time(
    wire, package
):
    rows = media_rows(package)
    for m in wire.imported.media:
        row = rows[m.media_id]
        assert row["fileName"] == m.file_name
        exif = json.loads(row["exifData"])
        assert exif == m.exif_data
        assert exif["DateTimeOriginal"] == exif_time(CAMERA_TIME + timedelta(seconds=m.seq))
        assert datetime.fromisoformat(row["timestamp"]) == m.timestamp


def test_the_exported_deployment_takes_the_imported_cameras_make_and_model(wire, package):
    with (package / "deployments.csv").open(newline="") as handle:
        (deployment,) = [d for d in csv.DictReader(handle) if d["deploymentID"] == DEPLOYMENT]
    assert deployment["cameraModel"] == "RECONYX-HC600 HYPERFIRE"


# -- what a camera or a folder may say that the wire does not take -----------------------------


def test_a_camera_whose_exif_names_are_longer_than_the_wire_takes_is_still_sent(tmp_path):
    settings = trap_settings(tmp_path)
    card = tmp_path / "card"
    card.mkdir()
    model, serial = "HYPERFIRE " * 10, "S" * 80  # more than the wire's 64 characters
    (card / "IMG_0001.JPG").write_bytes(
        trailcam_jpeg(taken_at=CAMERA_TIME, model=model, serial=serial, seed=1)
    )
    store = open_store(settings)
    try:
        (event_id,) = Importer(settings, store).run(ImportRequest(card, "dep-1")).closed_events
        assert store.db is not None
        meta = capture_meta(store.db, DEVICE, f"meta:{event_id}", event_id, vision=False)
    finally:
        store.close()
    camera = meta.event.camera
    assert camera is not None and camera.model is not None and camera.serial is not None
    assert model.strip().startswith(camera.model) and serial.startswith(camera.serial)
    (media,) = meta.media
    assert media.exif_data is not None
    # Whole in the EXIF the photo travels with.
    assert (media.exif_data["Model"], media.exif_data["BodySerialNumber"]) == (
        model.strip(),
        serial,
    )
    assert protocol.decode(protocol.encode(meta)) == meta


def test_a_folder_file_name_the_wire_refuses_is_sent_with_those_characters_replaced(tmp_path):
    settings = trap_settings(tmp_path)
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "north\\gate IMG_0001.JPG").write_bytes(trailcam_jpeg(taken_at=CAMERA_TIME, seed=2))
    store = open_store(settings)
    try:
        (event_id,) = Importer(settings, store).run(ImportRequest(folder, "dep-1")).closed_events
        assert store.db is not None
        meta = capture_meta(store.db, DEVICE, f"meta:{event_id}", event_id, vision=False)
    finally:
        store.close()
    assert [m.file_name for m in meta.media] == ["north_gate IMG_0001.JPG"]
