"""`camtrap import` from a real FAT card image, mounted read-only through FUSE as on a trap.

The kernel here has no vfat driver; ``tests/support/fatcard`` builds the image with dosfstools
and mtools and mounts it with fusefat, and ``pull()`` kills the FUSE process, which is what a
card yanked out of its reader looks like to the importer: every read fails.
"""

from __future__ import annotations

import hashlib
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from device.config import Settings
from device.importer.engine import Importer, ImportRequest
from device.store.db import open_readonly
from device.store.imports import ImportProgress
from device.store.store import MediaStore, free_bytes
from device.store.vocabulary import ImportState
from tests.support.fatcard import build_card, fuse_available, mounted_card
from tests.support.trailcam import hyperfire_note, trailcam_jpeg
from tests.support.trap_db import write_config
from tests.support.world import trap_settings

pytestmark = pytest.mark.skipif(
    fuse_available() is not None, reason=f"FUSE card images: {fuse_available()}"
)

BASE = datetime(2026, 11, 20, 6, 30, 0)
ROOT = Path(__file__).resolve().parents[1]


def burst_files(triggers: int, frames: int = 3, per_folder: int = 999) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    n = 0
    for trigger in range(triggers):
        for k in range(frames):
            moment = BASE + timedelta(minutes=10 * trigger, seconds=k)
            note = hyperfire_note(
                taken_at=moment, sequence=(k + 1, frames), event_number=trigger + 1
            )
            folder = 100 + n // per_folder
            name = f"DCIM/{folder}RECNX/IMG_{n % per_folder + 1:04d}.JPG"
            files[name] = trailcam_jpeg(taken_at=moment, maker_note=note, seed=n, size=(64, 48))
            n += 1
    return files


def settings_for(tmp_path: Path, **sections: dict[str, Any]) -> Settings:
    sections.setdefault("device", {"id": "test-trap", "deployment_id": "dep-1"})
    return trap_settings(tmp_path, **sections)


def importer(settings: Settings, store: MediaStore, **kwargs: Any) -> Importer:
    return Importer(
        settings, store, free_bytes=lambda: free_bytes(settings.storage.data_dir), **kwargs
    )


def held(settings: Settings, sql: str) -> list[tuple[Any, ...]]:
    conn = open_readonly(settings.storage.data_dir / "camtrap.db")
    try:
        with conn.read() as c:
            return [tuple(r) for r in c.execute(sql).fetchall()]
    finally:
        conn.close()


def test_a_fat_card_mounted_read_only_is_imported_byte_for_byte(tmp_path):
    settings = settings_for(tmp_path)
    files = burst_files(4)
    files["DCIM/100RECNX/IMG_0100.AVI"] = b"RIFF\x00\x00\x00\x00AVI LIST" + b"\0" * 500
    files["._IMG_0001.JPG"] = b"\x00\x05\x16\x07 AppleDouble"
    files["System Volume Information/IndexerVolumeGuid"] = b"{guid}"
    image = build_card(tmp_path / "card.img", files, label=None)
    store = MediaStore(settings)
    store.open()
    try:
        with mounted_card(image, tmp_path / "mnt") as card:
            outcome = importer(settings, store).run(ImportRequest(card.path, "dep-1"))
    finally:
        store.close()
    assert outcome.state is ImportState.DONE
    assert outcome.progress.imported == 12 and outcome.progress.not_images == 1
    assert outcome.skipped == 2
    stored = dict(held(settings, "SELECT file_name, path FROM media"))
    for name, data in files.items():
        if name.endswith(".JPG") and not name.startswith("._"):
            copy = settings.storage.data_dir / stored[Path(name).name]
            assert hashlib.sha256(copy.read_bytes()).digest() == hashlib.sha256(data).digest()


def test_a_card_pulled_mid_import_resumes_with_no_duplicates_and_no_split_event(tmp_path):
    settings = settings_for(tmp_path, **{"import": {"batch_photos": 6}})
    files = burst_files(10)
    image = build_card(tmp_path / "card.img", files, label=None)
    store = MediaStore(settings)
    store.open()
    try:
        with mounted_card(image, tmp_path / "mnt") as card:

            def pull_at_17(progress: ImportProgress, total: int) -> None:
                if progress.files_done == 17:  # in the middle of the sixth burst
                    card.pull()

            first = importer(settings, store, on_progress=pull_at_17).run(
                ImportRequest(card.path, "dep-1")
            )
        assert first.state is ImportState.INTERRUPTED
        assert "card went away" in (first.message or "")
        # Whole bursts only: the one being read when the card went is held back.
        partial = held(settings, "SELECT frame_count FROM events")
        assert partial and {n for (n,) in partial} == {3}
        with mounted_card(image, tmp_path / "mnt2") as card:
            second = importer(settings, store).run(ImportRequest(card.path, "dep-1"))
    finally:
        store.close()
    assert second.state is ImportState.DONE
    assert second.progress.duplicates == 3 * len(partial)
    assert held(settings, "SELECT COUNT(*), COUNT(DISTINCT sha256) FROM media") == [(30, 30)]
    assert held(settings, "SELECT COUNT(*), MIN(frame_count), MAX(frame_count) FROM events") == [
        (10, 3, 3)
    ]
    states = held(settings, "SELECT state FROM imports ORDER BY started_at, rowid")
    assert states == [("interrupted",), ("done",)]


def test_fat_names_and_times_quirks_do_not_change_what_is_imported(tmp_path):
    """Long names, lower-case 8.3 names (fusefat shows them upper case), hidden attributes,
    and FAT's 2-second local-time stamps set to nonsense: the EXIF time decides."""
    settings = settings_for(tmp_path)
    files = {
        "DCIM/100BUSH/img_0001.jpg": trailcam_jpeg(taken_at=BASE, seed=1, make="Bushnell"),
        "DCIM/100BUSH/A much longer name (2).JPG": trailcam_jpeg(
            taken_at=BASE + timedelta(seconds=1), seed=2, make="Bushnell"
        ),
        "DCIM/100BUSH/HIDDEN.JPG": trailcam_jpeg(
            taken_at=BASE + timedelta(seconds=2), seed=3, make="Bushnell"
        ),
    }
    stamps = {name: datetime(1980, 1, 1, 0, 0, 1) for name in files}
    image = build_card(
        tmp_path / "card.img", files, label=None, mtimes=stamps, hidden=["DCIM/100BUSH/HIDDEN.JPG"]
    )
    store = MediaStore(settings)
    store.open()
    try:
        with mounted_card(image, tmp_path / "mnt") as card:
            outcome = importer(settings, store).run(ImportRequest(card.path, "dep-1"))
    finally:
        store.close()
    assert outcome.progress.imported == 3 and len(outcome.events) == 1
    times = [p.taken_at.replace(tzinfo=None) for p in outcome.events[0].photos]
    assert times == [BASE + timedelta(seconds=s) for s in range(3)]


def test_a_10000_file_card_imports_whole_from_the_command(tmp_path):
    settings = settings_for(tmp_path, storage={"min_free_bytes": 0})
    config = write_config(settings, tmp_path / "camtrap.toml")
    files = burst_files(3334)  # 10,002 photos, in eleven DCIM folders
    image = build_card(tmp_path / "card.img", files, label=None)
    import subprocess

    with mounted_card(image, tmp_path / "mnt") as card:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "device.cli",
                "--config",
                str(config),
                "import",
                str(card.path),
                "--no-classify",
                "--plain",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=ROOT,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "10002 photos imported in 3334 events" in done.stdout
    assert held(settings, "SELECT COUNT(*), COUNT(DISTINCT sha256) FROM media") == [(10002, 10002)]
