"""Worlds for ``camtrap-cloud train``: labelled folders and reviewed ingest stores of the
project's own synthetic scenes (device/hardware/scene.py), as real JPEGs.

A folder is what ``tests.support.bursts.write_bursts`` writes, with a ``species.csv`` naming
each frame's class (its species, or blank). A store holds the same kind of bursts as a trap
uploads them (``IngestStore.store_capture``, ``install_file``/``record_file``), with an
event-level machine observation per burst, and the review page's own ``save_review`` writes
the human verdicts.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cloud_stub.cli import main as cloud_main
from cloud_stub.ingest.store import IngestStore, open_store_db
from cloud_stub.review.reviews import save_review
from cloud_stub.review.taxa import Choice
from device.hardware.scene import SceneRenderer, plan_scene
from device.protocol import CaptureMeta, Event, Media, Observation
from tests.support.bursts import write_bursts

T0 = datetime(2026, 6, 1, 20, 0, tzinfo=UTC)
TAXA = {
    "domestic cat": Choice(
        "Felis catus", "domestic cat", "species", "mammalia;carnivora;felidae;felis;catus"
    ),
    "domestic horse": Choice(
        "Equus caballus",
        "domestic horse",
        "species",
        "mammalia;perissodactyla;equidae;equus;caballus",
    ),
}


def labelled_folder(folder: Path, bursts: int, seed: int) -> Path:
    """Synthetic bursts and ``folder/species.csv`` (file,label): each frame's species or
    ``blank``."""
    frames = write_bursts(folder, bursts, seed, frames=3, size=(480, 270))
    species = {r["file"]: r["species"] for r in csv.DictReader((folder / "labels.csv").open())}
    with (folder / "species.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "label"])
        for frame in frames:
            writer.writerow([frame.file, species[frame.file] or "blank"])
    return folder / "species.csv"


@dataclass
class Burst:
    event_id: str
    deployment_id: str
    truth: str  # "blank" or the species' common name
    media_ids: list[str] = field(default_factory=list)


def _jpeg(image: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=88)  # type: ignore[attr-defined]
    return out.getvalue()


def reviewed_store(
    root: Path,
    deployments: list[str],
    bursts: int,
    seed: int,
    *,
    frames: int = 2,
    size: tuple[int, int] = (320, 180),
) -> list[Burst]:
    """``bursts`` synthetic bursts per deployment, uploaded with their full-resolution files
    and a machine observation each (no reviews yet: see ``review``)."""
    namespace = uuid.UUID(int=seed)
    store = IngestStore(root)
    out: list[Burst] = []
    try:
        store.begin()
        for d, deployment in enumerate(deployments):
            device_id = f"trap-{d}"
            for b in range(bursts):
                plan = plan_scene(seed + d, b)
                renderer = SceneRenderer(plan, size)
                start = T0 + timedelta(minutes=10 * b)
                event_id = str(uuid.uuid5(namespace, f"{deployment}/{b}"))
                rendered = [renderer.render(i) for i in range(frames)]
                truth = next((r.species for r in rendered if r.species), None) or "blank"
                burst = Burst(event_id, deployment, truth)
                media = []
                for i in range(frames):
                    media_id = str(uuid.uuid5(namespace, f"{deployment}/{b}/{i}"))
                    burst.media_ids.append(media_id)
                    media.append(
                        Media(
                            media_id=media_id,
                            event_id=event_id,
                            deployment_id=deployment,
                            seq=i,
                            capture_method="activityDetection",
                            timestamp=start + timedelta(seconds=i),
                            file_name=f"IMG_{b:04d}_{i}.jpg",
                            width=size[0],
                            height=size[1],
                            clock_source="ntp",
                            clock_synced=True,
                            ir_on=False,
                        )
                    )
                machine_blank = b % 3 == 0  # the machine's guess, unrelated to the truth
                meta = CaptureMeta(
                    device_id=device_id,
                    item_id=f"capture:{event_id}",
                    event=Event(
                        event_id=event_id,
                        deployment_id=deployment,
                        capture_method="activityDetection",
                        trigger_source="pir",
                        event_start=start,
                        event_end=start + timedelta(seconds=frames),
                        frame_count=frames,
                        clock_source="ntp",
                        clock_synced=True,
                        blank_score=0.9 if machine_blank else 0.1,
                    ),
                    media=media,
                    observations=[
                        Observation(
                            observation_id=str(uuid.uuid5(namespace, f"machine/{event_id}")),
                            deployment_id=deployment,
                            event_id=event_id,
                            media_id=None,
                            event_start=start,
                            event_end=start + timedelta(seconds=frames),
                            observation_level="event",
                            observation_type="blank" if machine_blank else "animal",
                            scientific_name=None if machine_blank else "Vulpes vulpes",
                            common_name=None if machine_blank else "red fox",
                            taxon_level=None if machine_blank else "species",
                            taxonomy=None
                            if machine_blank
                            else "mammalia;carnivora;canidae;vulpes;vulpes",
                            count=None if machine_blank else 1,
                            classified_by="efficientnet-lite0-imagenet@1.0.0",
                            classification_timestamp=start,
                            classification_probability=0.7,
                            blank_score=0.9 if machine_blank else 0.1,
                        )
                    ],
                )
                store.seen(device_id, T0.isoformat())
                store.store_capture(meta, T0.isoformat())
                for m, r in zip(media, rendered, strict=True):
                    data = _jpeg(r.image)
                    row = store.media_row(m.media_id)
                    relative = store.media_target(row, "full")
                    store.install_file([data], relative)
                    store.record_file(
                        m.media_id,
                        "full",
                        relative,
                        hashlib.sha256(data).hexdigest(),
                        T0.isoformat(),
                    )
                out.append(burst)
        store.media.flush()
        store.commit()
    finally:
        store.close()
    return out


def review(
    root: Path,
    bursts: list[Burst],
    label: Callable[[Burst], str] = lambda b: b.truth,
    username: str = "alice",
) -> int:
    """Review each burst as the review page does: blank, or a correction to its species."""
    db = open_store_db(root, write=True)
    try:
        for burst in bursts:
            said = label(burst)
            if said == "blank":
                save_review(db, burst.event_id, username=username, action="blank")
            else:
                save_review(
                    db, burst.event_id, username=username, action="correct", choice=TAXA[said]
                )
    finally:
        db.close()
    return len(bursts)


def train(*args: str | Path) -> tuple[int, str, str]:
    """``camtrap-cloud train ARGS`` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cloud_main(["train", *map(str, args)])
    return code, out.getvalue(), err.getvalue()
