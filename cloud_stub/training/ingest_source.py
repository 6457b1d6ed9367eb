"""Labelled images from the cloud stub's ingest store: what reviewers said, and only that.

Only human observations (``classification_method = 'human'``) label anything: a head trained
on the machine's own labels would learn its mistakes. Which human row speaks for a capture is
the export's rule (``cloud_stub.export.preference``: the latest review of a machine row wins),
plus the review page's ``supersedes`` link for events that had no machine row. A media-level
review labels its frame; an event-level review labels every frame of its event, except frames
that have a media-level review of their own. A frame left with two different labels (two
species in one frame) is ambiguous for a one-label classifier and is left out.

Only full-resolution files are used: a thumbnail is not what the trap's model sees.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from cloud_stub.export.package import ExportError
from cloud_stub.export.preference import HUMAN, preferred_observations
from cloud_stub.export.source import open_readonly
from cloud_stub.ingest.opening import open_store_media
from cloud_stub.media import MediaMissing, MediaStorage, MediaUnavailable
from cloud_stub.training.classes import BLANK, DROPS, VEHICLE, TrainClass, animal
from cloud_stub.training.classes import HUMAN as HUMAN_CLASS
from cloud_stub.training.errors import TrainingError
from cloud_stub.training.labelled import LabelledImage, LabelledSet
from device.contracts.taxa import HUMAN_TAXONOMY

__all__ = ["ingest_images"]

EVENT_RULE = "the store's events (an event-level review labels every frame of its event)"


def _details(row: dict[str, Any]) -> dict[str, Any]:
    try:
        value = json.loads(row.get("details") or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _class_of(row: dict[str, Any]) -> TrainClass | str:
    """The class a human row names, or why it names none."""
    kind = row["observation_type"]
    if kind == "blank":
        return BLANK
    if kind == "vehicle":
        return VEHICLE
    if kind == "human":
        return HUMAN_CLASS
    if kind != "animal":
        return f"reviewed as {kind}"
    name = row.get("scientific_name") or row.get("common_name")
    if not name or not name.strip():
        return "animal reviewed without a name"
    if DROPS.drops(name):
        return f"machine-unusable label {name.strip().lower()!r}"
    if (row.get("taxonomy") or "").strip().lower() == HUMAN_TAXONOMY:
        return HUMAN_CLASS
    return animal(name, row.get("common_name") or name, row.get("taxonomy"))


def _countries(registry: Path) -> dict[str, str]:
    """deploymentID -> countryCode as provisioning recorded it (the registry, read-only)."""
    path = registry / "registry.db"
    if not path.is_file():
        raise TrainingError(f"--registry {registry}: no registry.db there")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = db.execute('SELECT "deploymentID", "countryCode" FROM deployments').fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise TrainingError(f"--registry {path}: cannot read deployments ({exc})") from None
    return {str(d): str(c or "").upper() for d, c in rows}


def _selected(
    known: list[str], deployment: str | None, country: str | None, registry: Path | None
) -> set[str]:
    if deployment is not None:
        if deployment not in known:
            shown = ", ".join(known[:10]) or "none"
            raise TrainingError(f"no deployment {deployment!r} in the store (it has: {shown})")
        return {deployment}
    if country is None:
        return set(known)
    if registry is None:
        raise TrainingError(
            "--country needs --registry DIR: the ingest store does not record where a "
            "deployment is; the registry's provisioning records do"
        )
    countries = _countries(registry)
    chosen = {d for d in known if countries.get(d) == country.upper()}
    if not chosen:
        raise TrainingError(f"no deployment in the store is in country {country!r} (registry)")
    return chosen


def _frames_labels(
    humans: list[dict[str, Any]], by_event: dict[str, list[str]], left_out: Counter[str]
) -> dict[str, set[TrainClass]]:
    """media id -> the classes reviews give it (media-level reviews over event-level)."""
    media_level: dict[str, set[TrainClass]] = defaultdict(set)
    event_level: dict[str, set[TrainClass]] = defaultdict(set)
    for row in humans:
        found = _class_of(row)
        if isinstance(found, str):
            left_out[found] += 1
            continue
        if row.get("media_id"):
            media_level[row["media_id"]].add(found)
        else:
            event_level[row["event_id"]].add(found)
    labels = dict(media_level)
    for event_id, classes in event_level.items():
        for media_id in by_event.get(event_id, []):
            labels.setdefault(media_id, set(classes))
    return labels


# Frames from an object store are downloaded once, here under the ingest root, and reused.
DOWNLOADS = ".media-downloads"


def _local_copy(store: MediaStorage, relative: str, root: Path) -> Path | None:
    """The frame as a local file (training reads files): the store's own file, or a download
    of the bucket's object; None when the object is not there."""
    local = store.local_path(relative)
    if local is not None:
        return local
    target = root / DOWNLOADS / relative
    if target.is_file():
        return target  # named by media id: an object never changes under its name
    try:
        with store.open(relative) as handle:
            data = handle.read()
    except MediaMissing:
        return None
    except MediaUnavailable as exc:
        raise TrainingError(exc.message) from None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        partial.write_bytes(data)
        partial.replace(target)
    except OSError as exc:
        raise TrainingError(f"cannot keep a download in {target.parent}: {exc}") from None
    return target


def ingest_images(
    root: Path,
    *,
    deployment: str | None = None,
    country: str | None = None,
    registry: Path | None = None,
    url: str | None = None,
) -> LabelledSet:
    """Every frame of the store a person labelled, in the selected deployments (``url``: the
    PostgreSQL store; None: ``$CAMTRAP_CLOUD_DB``, else ``<root>/ingest.sqlite``)."""
    root = Path(root)
    try:
        db = open_readonly(root, url)
    except ExportError as exc:
        raise TrainingError(str(exc)) from None
    try:
        store = open_store_media(db, root)
        known = [r[0] for r in db.execute("SELECT deployment_id FROM deployments ORDER BY 1")]
        chosen = _selected(known, deployment, country, registry)
        observations = [
            dict(r) for r in db.execute("SELECT * FROM observations ORDER BY observation_id")
        ]
        media = {
            r["media_id"]: dict(r)
            for r in db.execute("SELECT * FROM media ORDER BY media_id")
            if r["deployment_id"] in chosen
        }
    finally:
        db.close()
    observations = [o for o in observations if o["deployment_id"] in chosen]
    humans = [
        o for o in preferred_observations(observations) if o["classification_method"] == HUMAN
    ]
    # A review that a later review of the same event supersedes says nothing any more.
    superseded = {_details(h).get("supersedes") for h in humans}
    humans = [h for h in humans if h["observation_id"] not in superseded]
    where = f"{root}" + (f" (deployment {deployment})" if deployment else "")
    if country and not deployment:
        where += f" (country {country.upper()})"
    if not humans:
        machine = sum(o["classification_method"] != HUMAN for o in observations)
        raise TrainingError(
            f"no human-reviewed observations in {where} ({machine} machine observations): "
            "machine labels never train; review events on the review page first"
        )
    by_event: dict[str, list[str]] = defaultdict(list)
    for m in media.values():
        by_event[m["event_id"]].append(m["media_id"])
    left_out: Counter[str] = Counter()
    images = []
    for media_id, classes in sorted(_frames_labels(humans, by_event, left_out).items()):
        row = media.get(media_id)
        if row is None:
            left_out["review of a frame the store does not have"] += 1
            continue
        if len({c.name for c in classes}) > 1:
            left_out["frame with two different labels (ambiguous)"] += 1
            continue
        if not row.get("file_path"):
            left_out["frame without its full-resolution file (thumbnail at most)"] += 1
            continue
        path = _local_copy(store, row["file_path"], root)
        if path is None or not path.is_file():
            left_out["frame file missing from the media store"] += 1
            continue
        images.append(
            LabelledImage(
                key=media_id,
                path=path,
                cls=min(classes, key=lambda c: (c.display, c.taxonomy)),
                event=row["event_id"],
                deployment=row["deployment_id"],
            )
        )
    hint = deployment or (country.lower() if country else root.name)
    return LabelledSet(images, f"ingest {where}", hint, EVENT_RULE, left_out)
