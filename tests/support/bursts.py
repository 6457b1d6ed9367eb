"""Labelled synthetic bursts on disk, as a camera trap's card would hold them.

``write_bursts`` renders scenes from ``device.hardware.scene`` (an animal crossing, or a false
trigger: light, wind, noise, night), writes each frame as a JPEG whose EXIF DateTimeOriginal
(and SubSecTimeOriginal) say when it was taken, and a ``labels.csv`` with the per-frame truth.
Frames of one burst are ``frame_interval_s`` apart and bursts ``burst_gap_s`` apart, so a
grouping by time gap can be checked against the ``scene`` each frame came from.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from PIL import Image

from device.hardware.scene import SceneRenderer, plan_scene

EXIF_IFD = 0x8769
DATETIME_ORIGINAL = 0x9003
SUBSEC_ORIGINAL = 0x9291
START = datetime(2026, 6, 1, 21, 0, 0)


@dataclass(frozen=True)
class WrittenFrame:
    file: str
    scene: int  # the burst it belongs to
    label: str  # animal or blank
    kind: str  # the scene's kind (crossing, light, wind, noise, night)
    taken_at: datetime | None


def save_with_time(image: Image.Image, path: Path, taken_at: datetime | None) -> None:
    exif = Image.Exif()
    if taken_at is not None:
        sub = exif.get_ifd(EXIF_IFD)
        sub[DATETIME_ORIGINAL] = taken_at.strftime("%Y:%m:%d %H:%M:%S")
        sub[SUBSEC_ORIGINAL] = f"{taken_at.microsecond // 1000:03d}"
    image.save(path, format="JPEG", quality=88, exif=exif.tobytes())


def write_bursts(
    folder: Path,
    n_bursts: int,
    seed: int,
    *,
    frames: int = 3,
    size: tuple[int, int] = (480, 270),
    frame_interval_s: float = 1.0,
    burst_gap_s: float = 600.0,
    event_column: bool = False,
    without_time: tuple[str, ...] = (),
    extra_columns: dict[str, list[str]] | None = None,
) -> list[WrittenFrame]:
    """Write the bursts and ``folder/labels.csv`` (file,label,species[,event][,extra...]).

    ``without_time`` names files written with no EXIF time; ``extra_columns`` gives more
    columns, one value per burst (e.g. ``{"dataset": [...]}``)."""
    folder.mkdir(parents=True, exist_ok=True)
    written: list[WrittenFrame] = []
    rows = []
    extra = extra_columns or {}
    for scene in range(n_bursts):
        plan = plan_scene(seed, scene)
        renderer = SceneRenderer(plan, size)
        start = START + timedelta(seconds=scene * burst_gap_s)
        for i in range(frames):
            rendered = renderer.render(i)
            name = f"b{scene:03d}_f{i}.jpg"
            when = None if name in without_time else start + timedelta(seconds=i * frame_interval_s)
            save_with_time(rendered.image, folder / name, when)
            label = "animal" if rendered.truth == "animal" else "blank"
            written.append(WrittenFrame(name, scene, label, plan.kind, when))
            row = {"file": name, "label": label, "species": rendered.species or ""}
            if event_column:
                row["event"] = f"burst{scene:03d}"
            for column, values in extra.items():
                row[column] = values[scene]
            rows.append(row)
    with (folder / "labels.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return written
