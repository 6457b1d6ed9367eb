"""Labelled images from the cloud stub's own store: what reviewers verified.

A person's label is preferred over the machine's by the same rule as the Camtrap DP export
(``cloud_stub.export.preference``). By default only human-verified labels are used, because a
model trained on its own guesses learns its own mistakes; ``include_machine`` adds machine
labels that no one reviewed (e.g. for a first look at the class balance).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from cloud_stub.export.package import ExportError
from cloud_stub.export.preference import HUMAN, preferred_observations
from cloud_stub.export.source import open_readonly
from cloud_stub.handoff.records import HandoffError, Record
from cloud_stub.ingest.opening import open_store_media
from cloud_stub.media import MediaStorage


def _category(row: dict[str, Any]) -> str | None:
    if row["observation_type"] == "animal":
        return row.get("scientific_name") or row.get("common_name")
    if row["observation_type"] in ("human", "vehicle", "blank"):
        return row["observation_type"]
    return None  # unknown / unclassified teach nothing


def _source(store: MediaStorage, relative: str) -> str | None:
    """Where the copy step reads the file: a local path, or the bucket's ``gs://`` URI (the
    copy step reads those itself); None for a local file that is missing."""
    local = store.local_path(relative)
    if local is None:
        return store.url(relative)
    return str(local.absolute()) if local.is_file() else None


def stub_records(
    ingest_root: Path, *, include_machine: bool = False, url: str | None = None
) -> list[Record]:
    try:
        db = open_readonly(ingest_root, url)
    except ExportError as exc:
        raise HandoffError(str(exc)) from exc
    try:
        store = open_store_media(db, Path(ingest_root))
        observations = [dict(r) for r in db.execute("SELECT * FROM observations")]
        media = {r["media_id"]: dict(r) for r in db.execute("SELECT * FROM media")}
    finally:
        db.close()
    by_event: dict[str, list[str]] = defaultdict(list)
    for m in media.values():
        by_event[m["event_id"]].append(m["media_id"])
    records: dict[str, Record] = {}
    for row in preferred_observations(observations):
        if row["classification_method"] != HUMAN and not include_machine:
            continue
        category = _category(row)
        if category is None:
            continue
        targets = [row["media_id"]] if row.get("media_id") else by_event[row["event_id"]]
        for media_id in targets:
            target = media.get(media_id)
            if target is None or not target.get("file_path"):
                continue  # only full-resolution files are worth training on
            source = _source(store, target["file_path"])
            if source is not None:
                records[f"{media_id}\x00{category}"] = Record(
                    image_id=media_id,
                    file_name=target["file_path"],
                    source=source,
                    category=category,
                    origin="stub",
                )
    return sorted(records.values(), key=lambda r: (r.image_id, r.category))
