"""`camtrap import` from a folder: what a technician's card becomes in the store.

Each test writes its own card (a folder of JPEGs the project writes, with realistic EXIF and
Reconyx maker notes) and its own trap under tmp_path; the store is the real one (SQLite, files).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from device.config import Settings
from device.importer.engine import Importer, ImportRefused, ImportRequest, media_id_for
from device.store.db import open_readonly
from device.store.store import MediaStore, free_bytes
from device.store.vocabulary import FailureKind, ImportState
from tests.support.trailcam import hyperfire_note, trailcam_jpeg
from tests.support.trap_db import write_config
from tests.support.world import trap_settings

ROOT = Path(__file__).resolve().parents[1]
DEV_SET = ROOT.parent / "shared" / "camtrap-dev"
BASE = datetime(2026, 11, 20, 6, 30, 0)


def reconyx_card(card: Path, triggers: int = 3, frames: int = 3, size=(96, 72)) -> list[Path]:
    """``triggers`` Reconyx bursts of ``frames`` photos, ten minutes apart."""
    folder = card / "DCIM" / "100RECNX"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    n = 0
    for trigger in range(triggers):
        for k in range(frames):
            n += 1
            moment = BASE + timedelta(minutes=10 * trigger, seconds=k)
            note = hyperfire_note(
                taken_at=moment, sequence=(k + 1, frames), event_number=trigger + 1
            )
            path = folder / f"IMG_{n:04d}.JPG"
            path.write_bytes(trailcam_jpeg(taken_at=moment, maker_note=note, seed=n, size=size))
            written.append(path)
    return written


def plain_photo(path: Path, moment: datetime | None, seed: int, **kwargs: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs.setdefault("make", "Bushnell")
    kwargs.setdefault("model", "119949C")
    path.write_bytes(trailcam_jpeg(taken_at=moment, seed=seed, **kwargs))
    return path


def settings_for(tmp_path: Path, **sections: dict[str, Any]) -> Settings:
    sections.setdefault("device", {"id": "test-trap", "deployment_id": "dep-1"})
    sections["device"].setdefault("timezone", "Africa/Nairobi")
    return trap_settings(tmp_path, **sections)


def run_import(settings: Settings, source: Path, **request: Any):
    store = MediaStore(settings)
    store.open()
    try:
        importer = Importer(
            settings, store, free_bytes=lambda: free_bytes(settings.storage.data_dir)
        )
        return importer.run(ImportRequest(source, request.pop("deployment", "dep-1"), **request))
    finally:
        store.close()


def rows(settings: Settings, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = open_readonly(settings.storage.data_dir / "camtrap.db")
    try:
        with conn.read() as c:
            return [tuple(r) for r in c.execute(sql, args).fetchall()]
    finally:
        conn.close()


def tree_state(root: Path) -> dict[str, tuple[str, float]]:
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def camtrap(config: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "device.cli", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


# -- events ----------------------------------------------------------------------------------


def test_each_reconyx_trigger_becomes_one_closed_event_of_byte_identical_photos(tmp_path):
    settings = settings_for(tmp_path)
    card = tmp_path / "card"
    photos = reconyx_card(card)
    outcome = run_import(settings, card)
    assert outcome.state is ImportState.DONE
    assert [len(e.photos) for e in outcome.events] == [3, 3, 3]
    assert {e.grouped_by for e in outcome.events} == {"sequence"}
    found = rows(settings, "SELECT state, frame_count, import_id, camera FROM events")
    assert len(found) == 3
    assert {(r[0], r[1]) for r in found} == {("closed", 3)}
    camera = json.loads(found[0][3])
    assert camera["make"] == "RECONYX" and camera["model"] == "HC600 HYPERFIRE"
    # Stored byte for byte, under an id made from the content.
    for path in photos:
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        media_id = media_id_for(settings.device.id, sha)
        ((rel, stored_sha, name),) = rows(
            settings, "SELECT path, sha256, file_name FROM media WHERE media_id = ?", media_id
        )
        assert stored_sha == sha and name == path.name
        assert (settings.storage.data_dir / rel).read_bytes() == path.read_bytes()
    # Every frame and every event's metadata is queued for upload, like a capture.
    kinds = rows(settings, "SELECT kind, COUNT(*) FROM outbox GROUP BY kind ORDER BY kind")
    assert kinds == [("media", 9), ("metadata", 3)]


def test_two_triggers_inside_the_gap_stay_two_events_when_the_camera_numbers_them(tmp_path):
    settings = settings_for(tmp_path)
    card = tmp_path / "card"
    folder = card / "DCIM"
    for n, (event, k) in enumerate([(1, 1), (1, 2), (2, 1), (2, 2)]):
        moment = BASE + timedelta(seconds=n * 5)  # all within 60 s of each other
        note = hyperfire_note(taken_at=moment, sequence=(k, 2), event_number=event)
        plain_photo(folder / f"IMG_{n:04d}.JPG", moment, n, make="RECONYX", maker_note=note)
    outcome = run_import(settings, card)
    assert [len(e.photos) for e in outcome.events] == [2, 2]


def test_photos_without_sequence_numbers_are_grouped_by_the_time_gap(tmp_path):
    settings = settings_for(tmp_path, **{"import": {"sequence_gap_s": 60, "max_event_s": 900}})
    card = tmp_path / "card"
    offsets = [0, 1, 2, 63, 64, 200, 1300]  # s: 61 s after the last photo starts an event
    for n, s in enumerate(offsets):
        plain_photo(card / f"PICT{n:04d}.JPG", BASE + timedelta(seconds=s), n)
    outcome = run_import(settings, card)
    assert [len(e.photos) for e in outcome.events] == [3, 2, 1, 1]
    assert {e.grouped_by for e in outcome.events} == {"time gap"}


def test_a_long_stay_in_front_of_the_camera_is_cut_into_several_events(tmp_path):
    settings = settings_for(
        tmp_path, **{"import": {"sequence_gap_s": 60, "max_event_s": 300, "max_event_frames": 4}}
    )
    card = tmp_path / "card"
    for n in range(12):  # one photo every 30 s for 6 minutes
        plain_photo(card / f"PICT{n:04d}.JPG", BASE + timedelta(seconds=30 * n), n)
    outcome = run_import(settings, card)
    sizes = [len(e.photos) for e in outcome.events]
    assert sum(sizes) == 12 and max(sizes) <= 4
    assert all((e.end - e.start).total_seconds() <= 300 for e in outcome.events)


def test_photos_of_two_cameras_in_one_folder_are_never_one_event(tmp_path):
    settings = settings_for(tmp_path)
    card = tmp_path / "card"
    plain_photo(card / "a.jpg", BASE, 1, serial="CAM-A")
    plain_photo(card / "b.jpg", BASE + timedelta(seconds=1), 2, serial="CAM-B")
    outcome = run_import(settings, card)
    assert len(outcome.events) == 2


def test_a_timelapse_photo_is_a_timelapse_event(tmp_path):
    settings = settings_for(tmp_path)
    card = tmp_path / "card"
    note = hyperfire_note(taken_at=BASE, trigger="timelapse")
    plain_photo(card / "IMG_0001.JPG", BASE, 1, make="RECONYX", maker_note=note)
    run_import(settings, card)
    assert rows(settings, "SELECT capture_method, trigger_source FROM events") == [
        ("timeLapse", "timelapse")
    ]


# -- duplicates and the card ------------------------------------------------------------------


def test_importing_the_same_card_again_adds_nothing(tmp_path):
    settings = settings_for(tmp_path)
    card = tmp_path / "card"
    reconyx_card(card)
    plain_photo(card / "DCIM" / "100RECNX" / "IMG_0100.JPG", None, 100)  # fails: no time
    first = run_import(settings, card)
    counts = rows(settings, "SELECT (SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM media)")
    kept = sorted((settings.storage.data_dir / "failed").rglob("*"))
    second = run_import(settings, card)
    assert first.progress.imported == 9 and second.progress.imported == 0
    assert second.progress.duplicates == 9 and second.events == []
    assert (
        rows(settings, "SELECT (SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM media)")
        == counts
    )
    # The photo that could not be imported is reported again, but kept only once.
    assert [f.kind for f in second.failures] == [FailureKind.NO_TIME]
    assert sorted((settings.storage.data_dir / "failed").rglob("*")) == kept


def test_the_same_photo_twice_on_one_card_is_stored_once(tmp_path):
    settings = settings_for(tmp_path)
    card = tmp_path / "card"
    first = plain_photo(card / "100" / "IMG_0001.JPG", BASE, 1)
    (card / "101").mkdir()
    shutil.copy(first, card / "101" / "IMG_0001.JPG")
    outcome = run_import(settings, card)
    assert outcome.progress.imported == 1 and outcome.duplicates == ["101/IMG_0001.JPG"]


def test_an_import_never_writes_to_the_card(tmp_path):
    settings = settings_for(tmp_path)
    card = tmp_path / "card"
    reconyx_card(card)
    (card / "notes.txt").write_text("camera 7, set up 2026-11-01")
    before = tree_state(card)
    run_import(settings, card)
    run_import(settings, card, clock_offset="+00:01:00")
    assert tree_state(card) == before


def test_hidden_and_system_files_are_left_out_and_counted(tmp_path):
    settings = settings_for(tmp_path)
    card = tmp_path / "card"
    plain_photo(card / "DCIM" / "IMG_0001.JPG", BASE, 1)
    (card / "DCIM" / "._IMG_0001.JPG").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    (card / "System Volume Information").mkdir()
    (card / "System Volume Information" / "IndexerVolumeGuid").write_bytes(b"{...}")
    (card / ".Trashes").mkdir()
    outcome = run_import(settings, card)
    assert outcome.progress.imported == 1 and outcome.failures == []
    assert outcome.skipped == 3


# -- bad input ----------------------------------------------------------------------------------


def test_a_truncated_jpeg_is_recorded_failed_with_its_reason_and_kept(tmp_path):
    settings = settings_for(tmp_path)
    card = tmp_path / "card"
    whole = trailcam_jpeg(taken_at=BASE, seed=7)
    (card / "DCIM").mkdir(parents=True)
    (card / "DCIM" / "IMG_0007.JPG").write_bytes(whole[: len(whole) // 2])
    outcome = run_import(settings, card)
    assert outcome.progress.imported == 0 and outcome.progress.failed == 1
    ((path, kind, reason, kept),) = rows(
        settings, "SELECT source_path, kind, reason, kept_path FROM import_failures"
    )
    assert (path, kind) == ("DCIM/IMG_0007.JPG", "corrupt") and "truncated" in reason
    assert (settings.storage.data_dir / kept).read_bytes() == whole[: len(whole) // 2]
    assert rows(settings, "SELECT COUNT(*) FROM media") == [(0,)]


def test_a_photo_without_an_exif_time_is_failed_and_never_given_a_guessed_time(tmp_path):
    settings = settings_for(tmp_path)
    card = tmp_path / "card"
    plain_photo(card / "IMG_0001.JPG", None, 1)
    os.utime(card / "IMG_0001.JPG", (BASE.timestamp(), BASE.timestamp()))  # a plausible mtime
    outcome = run_import(settings, card)
    assert [f.kind for f in outcome.failures] == [FailureKind.NO_TIME]
    assert "no EXIF time" in outcome.failures[0].reason
    assert rows(settings, "SELECT COUNT(*) FROM media") == [(0,)]


def test_a_video_or_text_file_is_recorded_as_not_a_photo_and_not_copied(tmp_path):
    settings = settings_for(tmp_path)
    card = tmp_path / "card"
    (card / "DCIM").mkdir(parents=True)
    (card / "DCIM" / "IMG_0002.AVI").write_bytes(b"RIFF\x00\x00\x00\x00AVI LIST" + b"\0" * 64)
    (card / "DCIM" / "readme.txt").write_text("hello")
    outcome = run_import(settings, card)
    assert {f.kind for f in outcome.failures} == {FailureKind.NOT_IMAGE}
    assert outcome.progress.not_images == 2 and outcome.progress.failed == 0
    assert all(f.kept_path is None for f in outcome.failures)
    assert "AVI" in next(f.reason for f in outcome.failures if f.source_path.endswith(".AVI"))


def test_fat_style_names_and_file_times_do_not_matter(tmp_path):
    """Upper-case 8.3 names, lower-case extensions, spaces, and file times that say nothing
    (FAT keeps local time at 2 s; a copy resets it): the EXIF time decides."""
    settings = settings_for(tmp_path)
    card = tmp_path / "card"
    names = ["DCIM/100BUSH/IMAG0001.JPG", "dcim/100bush/imag0002.jpg", "DCIM/Copy of IMG 3.Jpeg"]
    for n, name in enumerate(names):
        path = plain_photo(card / name, BASE + timedelta(seconds=n), n)
        os.utime(path, (0, 946_684_800 + 2 * n))  # 2000-01-01: a camera whose date was reset
    outcome = run_import(settings, card)
    assert outcome.progress.imported == 3 and len(outcome.events) == 1
    assert [p.taken_at.replace(tzinfo=None) for p in outcome.events[0].photos] == [
        BASE,
        BASE + timedelta(seconds=1),
        BASE + timedelta(seconds=2),
    ]


# -- time ---------------------------------------------------------------------------------------


def test_the_cameras_own_offset_wins_and_else_the_deployment_zone_is_an_assumption(tmp_path):
    settings = settings_for(tmp_path)  # Africa/Nairobi, +03:00
    card = tmp_path / "card"
    plain_photo(card / "a.JPG", BASE, 1, offset="+01:00", serial="A")
    plain_photo(card / "b.JPG", BASE, 2, serial="B")
    run_import(settings, card)
    found = dict(rows(settings, "SELECT file_name, captured_at FROM media"))
    assert found == {"a.JPG": "2026-11-20T06:30:00+01:00", "b.JPG": "2026-11-20T06:30:00+03:00"}
    exif = {n: json.loads(e) for n, e in rows(settings, "SELECT file_name, exif_data FROM media")}
    assert "camtrapTimeZone" not in exif["a.JPG"]
    assert exif["b.JPG"]["camtrapTimeZone"] == {"zone": "Africa/Nairobi", "assumed": True}


def test_a_clock_offset_shifts_every_time_and_keeps_the_original_in_exif(tmp_path):
    settings = settings_for(tmp_path)
    card = tmp_path / "card"
    reconyx_card(card, triggers=1)
    run_import(settings, card, clock_offset="-00:04:30")
    for captured_at, exif_text, source in rows(
        settings, "SELECT captured_at, exif_data, clock_source FROM media ORDER BY seq"
    ):
        exif = json.loads(exif_text)
        original = datetime.strptime(exif["DateTimeOriginal"], "%Y:%m:%d %H:%M:%S")
        shifted = datetime.fromisoformat(captured_at).replace(tzinfo=None)
        assert original - shifted == timedelta(minutes=4, seconds=30)
        assert exif["camtrapClockCorrection"] == {"offsetS": -270.0, "method": "offset"}
        assert source == "trailcam+offset"
    assert rows(settings, "SELECT clock_offset_s, clock_method FROM imports") == [
        (-270.0, "offset")
    ]


def test_a_reference_photo_of_a_phone_clock_sets_the_offset(tmp_path):
    settings = settings_for(tmp_path)
    card = tmp_path / "card"
    photos = reconyx_card(card, triggers=2)
    # The camera said 06:30:00 for its first photo; the phone in it showed 07:32:10.
    outcome = run_import(settings, card, reference=f"{photos[0].name}=2026-11-20T07:32:10")
    assert outcome.clock.offset.total_seconds() == 3730
    assert outcome.clock.method == "reference" and outcome.clock.synced
    first = rows(settings, "SELECT captured_at, clock_synced FROM media ORDER BY captured_at")[0]
    assert first == ("2026-11-20T07:32:10+03:00", 1)


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        ({"clock_offset": "4 minutes"}, "expected ±HH:MM:SS"),
        ({"clock_offset": "+99999:00:00"}, "more than ten years"),
        ({"reference": "IMG_0001.JPG"}, "expected PHOTO=TIME"),
        ({"reference": "IMG_0001.JPG=yesterday"}, "not a time"),
        ({"reference": "NOPE.JPG=2026-11-20T07:00:00"}, "no such photo"),
    ],
)
def test_a_bad_clock_correction_refuses_the_import_before_anything_is_stored(
    tmp_path, arguments, words
):
    settings = settings_for(tmp_path)
    card = tmp_path / "card"
    reconyx_card(card, triggers=1)
    with pytest.raises(ImportRefused, match=words):
        run_import(settings, card, **arguments)
    assert not list((settings.storage.data_dir).rglob("*.jpg"))


# -- the command ----------------------------------------------------------------------------------


def test_the_command_imports_classifies_and_status_counts_it(tmp_path):
    settings = settings_for(tmp_path, vision={"enabled": True})
    config = write_config(settings, tmp_path / "camtrap.toml")
    card = tmp_path / "card"
    reconyx_card(card, triggers=2, size=(224, 168))
    done = camtrap(config, "import", str(card), "--camera", "gate-7")
    assert done.returncode == 0, done.stderr
    assert "6 photos imported in 2 events" in done.stdout
    assert "Traceback" not in done.stderr
    assert rows(settings, "SELECT DISTINCT state FROM events") == [("classified",)]
    assert rows(settings, "SELECT COUNT(*) FROM media WHERE thumb_path IS NOT NULL") == [(6,)]
    status = camtrap(config, "status", "--json")
    report = json.loads(status.stdout)
    assert report["imports"]["events"] == 2 and report["imports"]["media"] == 6
    assert report["imports"]["last"]["camera"] == "gate-7"
    assert report["events"] == 2 and report["media"] == 6
    again = camtrap(config, "import", str(card), "--json")
    assert again.returncode == 0
    body = json.loads(again.stdout)
    assert body["imported"] == 0 and body["duplicates"] == 6


def test_a_dry_run_prints_the_events_and_writes_nothing(tmp_path):
    settings = settings_for(tmp_path)
    config = write_config(settings, tmp_path / "camtrap.toml")
    card = tmp_path / "card"
    reconyx_card(card, triggers=2)
    done = camtrap(config, "import", str(card), "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "would import 6 photos in 2 events" in done.stdout
    assert "IMG_0004.JPG" in done.stdout
    assert not (settings.storage.data_dir / "camtrap.db").exists()


def test_failed_files_are_listed_one_line_each_and_exit_one(tmp_path):
    settings = settings_for(tmp_path)
    config = write_config(settings, tmp_path / "camtrap.toml")
    card = tmp_path / "card"
    plain_photo(card / "ok.JPG", BASE, 1)
    plain_photo(card / "notime.JPG", None, 2)
    done = camtrap(config, "import", str(card), "--no-classify")
    assert done.returncode == 1
    assert "not imported: notime.JPG: no EXIF time" in done.stdout


@pytest.mark.parametrize(
    ("arguments", "code", "words"),
    [
        (["/no/such/card"], 66, "/no/such/card: no such card or folder"),
        (["{card}", "--deployment", "has space"], 2, "--deployment 'has space'"),
        (["{card}", "--clock-offset", "soon"], 65, "--clock-offset 'soon'"),
        (["{card}", "--camera", "x" * 65], 2, "--camera"),
    ],
)
def test_bad_arguments_are_one_line_with_their_exit_code(tmp_path, arguments, code, words):
    settings = settings_for(tmp_path)
    config = write_config(settings, tmp_path / "camtrap.toml")
    card = tmp_path / "card"
    plain_photo(card / "ok.JPG", BASE, 1)
    done = camtrap(config, "import", *[a.replace("{card}", str(card)) for a in arguments])
    assert done.returncode == code, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], done.stderr


def test_an_import_into_a_trap_without_a_deployment_asks_for_one(tmp_path):
    settings = settings_for(tmp_path, device={"id": "t", "deployment_id": ""})
    config = write_config(settings, tmp_path / "camtrap.toml")
    card = tmp_path / "card"
    plain_photo(card / "ok.JPG", BASE, 1)
    done = camtrap(config, "import", str(card))
    assert done.returncode == 2 and "give --deployment ID" in done.stderr


def test_an_import_killed_midway_resumes_with_no_duplicates(tmp_path):
    settings = settings_for(tmp_path, **{"import": {"batch_photos": 5}})
    config = write_config(settings, tmp_path / "camtrap.toml")
    card = tmp_path / "card"
    reconyx_card(card, triggers=40, frames=3, size=(320, 240))
    process = subprocess.Popen(
        [sys.executable, "-m", "device.cli", "--config", str(config), "import", str(card)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    copies = settings.storage.data_dir / "imported"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(copies.rglob("*.jpg"))) < 20:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = camtrap(config, "import", str(card), "--no-classify", "--json")
    assert done.returncode == 0, done.stderr
    assert rows(settings, "SELECT COUNT(*), COUNT(DISTINCT sha256) FROM media") == [(120, 120)]
    assert rows(settings, "SELECT COUNT(*) FROM events") == [(40,)]
    states = [s for (s,) in rows(settings, "SELECT state FROM imports ORDER BY started_at")]
    assert states[-1] == "done" and set(states[:-1]) <= {"interrupted"}


@pytest.mark.parametrize(
    "reserve",
    [64 * 1024, 0],
    ids=["stops-at-the-reserve", "no-reserve-meets-ENOSPC"],
)
def test_a_full_disk_stops_the_import_cleanly_and_it_resumes_later(tmp_path, reserve):
    mount = shutil.which("mount")
    if os.geteuid() != 0 or mount is None:
        pytest.skip("mounting a small tmpfs needs root and mount(8)")
    data = tmp_path / "data"
    data.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(data)])
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        settings = settings_for(tmp_path, storage={"min_free_bytes": reserve})
        config = write_config(settings, tmp_path / "camtrap.toml")
        card = tmp_path / "card"
        reconyx_card(card, triggers=10, frames=3, size=(320, 240))
        full = camtrap(config, "import", str(card), "--no-classify")
        assert full.returncode == 73, full.stderr
        assert "disk is full" in full.stderr and "Traceback" not in full.stderr
        first = rows(settings, "SELECT COUNT(*) FROM media")[0][0]
        # With a reserve the import stops while the database still has room for the rows of
        # what was read; without one, the card may be too full for even those (SQLITE_FULL).
        assert (0 < first < 30) if reserve else (0 <= first < 30)
        assert rows(settings, "SELECT state FROM imports") == [("disk_full",)]
        # Room is made (a bigger card, uploads pruned): the same command finishes the job.
        subprocess.run(["mount", "-o", "remount,size=16m", str(data)], check=True)
        rest = camtrap(config, "import", str(card), "--no-classify", "--json")
        assert rest.returncode == 0, rest.stderr
        assert json.loads(rest.stdout)["duplicates"] == first
        assert rows(settings, "SELECT COUNT(*), COUNT(DISTINCT sha256) FROM media") == [(30, 30)]
    finally:
        subprocess.run(["umount", "-l", str(data)], check=False)


# -- real photos ---------------------------------------------------------------------------------


@pytest.mark.skipif(not DEV_SET.is_dir(), reason="../shared/camtrap-dev is absent")
def test_the_real_serengeti_frames_make_three_bursts_and_a_single(tmp_path):
    """Read where they are (a dry run writes nothing), never copied into the repo."""
    settings = settings_for(tmp_path)
    outcome = Importer(settings, None).run(ImportRequest(DEV_SET, "dep-1"), dry_run=True)
    serengeti = [e for e in outcome.events if all(p.rel.startswith("serengeti_") for p in e.photos)]
    assert sorted(len(e.photos) for e in serengeti) == [1, 3, 3, 3]
    assert sum(len(e.photos) for e in serengeti) == len(list(DEV_SET.glob("serengeti_*.jpg")))
    assert all(e.grouped_by == "time gap" for e in serengeti)
