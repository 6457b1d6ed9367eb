"""Trail-camera import: 10,000 small JPEGs from a FAT card image, classification excluded.

- ``import_files_per_s``: files through ``camtrap import --no-classify`` (read, hash, EXIF and
  maker note, copy into the store, group, commit), on a FUSE-mounted FAT32 image;
- ``import_vs_copy_ratio``: the same import's time over a plain ``cp -r`` of the same card in
  the same run (this shared machine is noisy; the ratio is what carries over);
- ``import_rss_mb``: the import command's peak RSS.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from device.store.db import open_readonly
from device.store.media import Media
from tests.bench.common import ROOT, emit, peak_rss_mb
from tests.support.fatcard import build_card, fuse_available, mounted_card
from tests.support.trailcam import hyperfire_note, trailcam_jpeg
from tests.support.trap_db import write_config
from tests.support.world import trap_settings

FILES = 10_000
PER_FOLDER = 1_000  # cameras start a new DCIM folder long before FAT's limits
BASE = datetime(2026, 11, 1, 6, 0, 0)


def card_files(count: int) -> dict[str, bytes]:
    """Reconyx-like 3-photo bursts, ten minutes apart, 1,000 to a folder."""
    files: dict[str, bytes] = {}
    for n in range(count):
        burst, k = divmod(n, 3)
        moment = BASE + timedelta(minutes=10 * burst, seconds=k)
        note = hyperfire_note(taken_at=moment, sequence=(k + 1, 3), event_number=burst + 1)
        folder = 100 + n // PER_FOLDER
        name = f"DCIM/{folder}RECNX/IMG_{n % PER_FOLDER + 1:04d}.JPG"
        files[name] = trailcam_jpeg(taken_at=moment, maker_note=note, seed=n, size=(64, 48))
    return files


def main() -> None:
    problem = fuse_available()
    if problem is not None:
        print(f"bench-skip import: {problem}", file=sys.stderr)
        return
    with tempfile.TemporaryDirectory(prefix="camtrap-bench-import-") as tmp:
        root = Path(tmp)
        # No volume label: fusefat shows one as an empty file at the root (tests/support/fatcard).
        image = build_card(root / "card.img", card_files(FILES), label=None)
        settings = trap_settings(root / "trap", storage={"min_free_bytes": 0})
        config = write_config(settings, root / "camtrap.toml")
        with mounted_card(image, root / "mnt") as card:
            started = time.perf_counter()
            shutil.copytree(card.path, root / "copy")
            copy_s = time.perf_counter() - started
            started = time.perf_counter()
            rss_mb, code = peak_rss_mb(
                [
                    "device.cli",
                    "--config",
                    str(config),
                    "import",
                    str(card.path),
                    "--no-classify",
                    "--plain",
                ]
            )
            import_s = time.perf_counter() - started
        if code != 0:
            print(f"bench-error import: camtrap import exited {code}", file=sys.stderr)
            return
        conn = open_readonly(settings.storage.data_dir / "camtrap.db")
        try:
            held = Media(conn).count()
        finally:
            conn.close()
        if held != FILES:
            print(f"bench-error import: {held} of {FILES} photos stored", file=sys.stderr)
            return
        emit("import_files_per_s", FILES / import_s, "files/s")
        emit("import_vs_copy_ratio", import_s / copy_s, "x")
        emit("import_rss_mb", rss_mb, "MB")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
