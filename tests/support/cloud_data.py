"""Worlds for the cloud-side tests (export, hand-off, reports): a filled ingest store, seeded.

Captures go through the real ``IngestStore.store_capture`` (the path ingest uses for every
``capture`` message) and files through ``install_file``/``record_file``, so the export reads
exactly what ingest would have written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cloud_stub.ingest.store import IngestStore, extension_for
from device.protocol import CaptureMeta, Event, Media, Observation, Telemetry
from tests.support.world import jpeg_bytes

T0 = datetime(2026, 5, 1, 18, 0, tzinfo=UTC)
SPECIES = (
    # scientific name, common name, SpeciesNet-style taxonomy (class;order;family;genus;species)
    ("Vulpes vulpes", "red fox", "mammalia;carnivora;canidae;vulpes;vulpes"),
    ("Meles meles", "European badger", "mammalia;carnivora;mustelidae;meles;meles"),
    ("Capreolus capreolus", "roe deer", "mammalia;cetartiodactyla;cervidae;capreolus;capreolus"),
)


@dataclass
class Site:
    deployment_id: str
    device_id: str
    latitude: float | None = 51.05
    longitude: float | None = 3.72
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class Filled:
    root: Path
    events: list[str] = field(default_factory=list)
    media: list[str] = field(default_factory=list)
    observations: list[dict[str, Any]] = field(default_factory=list)  # machine, as stored


def _capture(site: Site, start: datetime, frames: int, rng: random.Random) -> CaptureMeta:
    event_id = str(uuid.UUID(int=rng.getrandbits(128)))
    blank = rng.random() < 0.3
    name, common, taxonomy = rng.choice(SPECIES)
    synced = rng.random() > 0.05
    end = start + timedelta(seconds=frames)
    event = Event(
        event_id=event_id,
        deployment_id=site.deployment_id,
        capture_method="activityDetection",
        trigger_source="pir",
        event_start=start,
        event_end=end,
        frame_count=frames,
        clock_source="ntp" if synced else "rtc",
        clock_synced=synced,
        blank_score=0.97 if blank else 0.05,
    )
    media, observations = [], []
    for seq in range(frames):
        media_id = str(uuid.UUID(int=rng.getrandbits(128)))
        media.append(
            Media(
                media_id=media_id,
                event_id=event_id,
                deployment_id=site.deployment_id,
                seq=seq,
                capture_method="activityDetection",
                timestamp=start + timedelta(seconds=seq),
                file_name=f"IMG_{seq:04d}.jpg",
                width=160,
                height=120,
                exif_data={"Make": "Raspberry Pi", "Model": "Camera Module 3"},
                clock_source=event.clock_source,
                clock_synced=synced,
                ir_on=start.hour >= 20 or start.hour < 6,
            )
        )
        observations.append(
            Observation(
                observation_id=str(uuid.UUID(int=rng.getrandbits(128))),
                deployment_id=site.deployment_id,
                event_id=event_id,
                media_id=media_id,
                event_start=start,
                event_end=end,
                observation_level="media",
                observation_type="blank" if blank else "animal",
                scientific_name=None if blank else name,
                common_name=None if blank else common,
                taxon_level=None if blank else "species",
                taxonomy=None if blank else taxonomy,
                count=None if blank else 1,
                classified_by="efficientnet-lite0-imagenet@1.0.0",
                classification_timestamp=end,
                classification_probability=round(rng.uniform(0.66, 0.99), 3),
                blank_score=event.blank_score,
            )
        )
    return CaptureMeta(
        device_id=site.device_id,
        item_id=f"capture:{event_id}",
        event=event,
        media=media,
        observations=observations,
    )


def fill_store(
    root: Path,
    sites: list[Site],
    *,
    captures: int = 6,
    frames: int = 2,
    seed: int = 1,
    files: str = "full",  # full | thumbnail | none: what the traps managed to upload
    spacing: timedelta = timedelta(minutes=37),
) -> Filled:
    """``captures`` bursts per site, one media-level machine observation per frame."""
    rng = random.Random(seed)
    picture = jpeg_bytes(64, 48, seed=seed)
    sha = hashlib.sha256(picture).hexdigest()
    out = Filled(root)
    store = IngestStore(root)
    try:
        store.begin()
        for site in sites:
            for i in range(captures):
                meta = _capture(site, T0 + i * spacing, frames, rng)
                store.seen(site.device_id, T0.isoformat())
                store.store_capture(meta, T0.isoformat())
                out.events.append(meta.event.event_id)
                for m in meta.media:
                    out.media.append(m.media_id)
                    row = store.media_row(m.media_id)
                    if files == "none":
                        continue
                    kind = "full" if files == "full" else "thumbnail"
                    relative = store.media_target(row, kind)
                    store.install_file([picture], relative)
                    store.record_file(m.media_id, kind, relative, sha, T0.isoformat())
                out.observations += [o.model_dump() for o in meta.observations]
            if site.latitude is not None or site.fields:
                store.record_deployment(
                    site.deployment_id,
                    site.device_id,
                    latitude=site.latitude,
                    longitude=site.longitude,
                    **site.fields,
                )
        store.media.flush()
        store.commit()
    finally:
        store.close()
    return out


def add_review(
    root: Path,
    machine: dict[str, Any],
    *,
    reviewer: str = "alice",
    scientific_name: str | None = "Martes foina",
    common_name: str | None = "beech marten",
    observation_type: str = "animal",
    at: datetime | None = None,
) -> str:
    """A human verdict on one machine observation: a new row, as the review page writes it."""
    observation_id = f"review-{uuid.uuid4()}"
    at = at or datetime.now(UTC)
    store = IngestStore(root)
    try:
        store.db.execute(
            "INSERT INTO observations (observation_id, deployment_id, media_id, event_id, "
            "event_start, event_end, observation_level, observation_type, scientific_name, "
            "common_name, taxon_level, count, classification_method, classified_by, "
            "classification_timestamp, details) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                observation_id,
                machine["deployment_id"],
                machine["media_id"],
                machine["event_id"],
                machine["event_start"].isoformat(),
                machine["event_end"].isoformat(),
                machine["observation_level"],
                observation_type,
                scientific_name,
                common_name,
                "species" if scientific_name else None,
                1 if observation_type == "animal" else None,
                "human",
                reviewer,
                at.isoformat(),
                json.dumps({"reviews": machine["observation_id"], "action": "correct"}),
            ),
        )
    finally:
        store.close()
    return observation_id


def add_telemetry(root: Path, device_id: str, *, hours: int = 6, seed: int = 2) -> int:
    """An hourly heartbeat per device: falling free disk, a queue, a warming CPU."""
    rng = random.Random(seed)
    store = IngestStore(root)
    try:
        store.begin()
        for h in range(hours):
            at = T0 + timedelta(hours=h)
            msg = Telemetry(
                device_id=device_id,
                item_id=f"tel-{device_id}-{h}",
                sent_at=at,
                free_disk_bytes=(20 - h) * 1_000_000_000,
                total_disk_bytes=32_000_000_000,
                queue_depth={"meta": rng.randint(0, 5), "thumbnail": rng.randint(0, 20)},
                cpu_temp_c=45.0 + h + rng.random(),
                last_sync_at=at - timedelta(minutes=rng.randint(1, 50)),
            )
            store.seen(device_id, at.isoformat())
            store.store_telemetry(msg, at.isoformat())
        store.commit()
    finally:
        store.close()
    return hours


def media_path(root: Path, deployment_id: str, media_id: str) -> Path:
    return root / "media" / deployment_id / f"{media_id}{extension_for('image/jpeg')}"


# -- COCO Camera Traps metadata, generated ---------------------------------------------------

DIRTY_CATEGORIES = (
    "#ref!",
    "empty",
    "end",
    "misfire",
    "small mammal",
    "start",
    "unidentifiable",
    "unidentified",
    "unknown",
    "unknown bird",
    "unknown rodent",
    "ave desconocida",
    "roedor desconocido",
)


def coco_camera_traps(
    annotations: int,
    *,
    seed: int = 7,
    species: int = 12,
    small_classes: int = 2,
    multi_label_images: int = 5,
) -> dict[str, Any]:
    """A COCO Camera Traps document shaped like LILA's WCS metadata, with its dirty categories.

    Species sizes follow a long tail; ``small_classes`` of them get fewer than 50 images, so
    the minimum per class has something to leave out. ``multi_label_images`` images carry two
    different species (ambiguous for single-label training).
    """
    rng = random.Random(seed)
    names = [f"species {chr(97 + i // 26)}{chr(97 + i % 26)}" for i in range(species)]
    categories = [{"id": i, "name": n} for i, n in enumerate([*names, *DIRTY_CATEGORIES])]
    weights = [1.0 / (1 + i) for i in range(species)] + [0.08] * len(DIRTY_CATEGORIES)
    small = set(range(species - small_classes, species))
    images, anns = [], []
    counts: dict[int, int] = {}
    while len(anns) < annotations:
        cat = rng.choices(range(len(categories)), weights)[0]
        if cat in small and counts.get(cat, 0) >= 20 + cat:
            continue
        counts[cat] = counts.get(cat, 0) + 1
        image_id = f"img{len(images):07d}"
        location = rng.randrange(40)
        images.append(
            {
                "id": image_id,
                "file_name": f"animals/{location:04d}/{image_id}.jpg",
                "location": location,
                "datetime": f"2019-0{1 + rng.randrange(9)}-1{rng.randrange(10)} 08:00:00",
            }
        )
        anns.append({"id": f"ann{len(anns):07d}", "image_id": image_id, "category_id": cat})
    for k in range(multi_label_images):
        image = images[k]
        other = (next(a["category_id"] for a in anns if a["image_id"] == image["id"]) + 1) % species
        anns.append({"id": f"multi{k}", "image_id": image["id"], "category_id": other})
    return {
        "info": {"version": "generated", "description": "camtrap test fixture"},
        "images": images,
        "categories": categories,
        "annotations": anns,
    }


def write_coco(path: Path, **kwargs: Any) -> dict[str, Any]:
    data = coco_camera_traps(**kwargs)
    path.write_text(json.dumps(data))
    return data


# -- an unwritable place, for real permission errors (tests run as root) -----------------------


@contextlib.contextmanager
def unwritable_dir(base: Path) -> Iterator[Path]:
    """A directory writes fail in: a read-only bind mount, else a path under a regular file.

    Root ignores file modes, so ``chmod`` cannot make one; the kernel's read-only mount (EROFS)
    or a file standing where a directory should be (ENOTDIR) fail for root too.
    """
    target = base / "readonly"
    target.mkdir(parents=True)
    mounted = False
    if shutil.which("mount") and os.geteuid() == 0:
        bind = subprocess.run(["mount", "--bind", str(target), str(target)], capture_output=True)
        if bind.returncode == 0:
            ro = subprocess.run(
                ["mount", "-o", "remount,bind,ro", str(target)], capture_output=True
            )
            mounted = True
            if ro.returncode != 0:
                subprocess.run(["umount", str(target)], check=False)
                mounted = False
    try:
        if mounted:
            yield target
        else:
            blocker = base / "a-file"
            blocker.write_text("not a directory")
            yield blocker / "sub"
    finally:
        if mounted:
            subprocess.run(["umount", str(target)], check=False)
