"""Read what ingest stored and shape it as Camtrap DP rows (a projection, never a write).

The ingest database is opened read-only, so an export can run next to a live ingest (WAL lets
readers in) and can never change what was stored. Columns added later by migrations may be
missing from an old store; they read as "not recorded".
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cloud_stub.export.cameras import DeploymentCamera, deployment_camera
from cloud_stub.export.clocks import clock_correction, clock_trouble
from cloud_stub.export.package import ExportError
from cloud_stub.export.preference import preferred_observations, reviewed_id
from cloud_stub.export.tables import camtrap_datetime
from cloud_stub.ingest.database import Database
from cloud_stub.ingest.opening import open_store_media
from cloud_stub.media import MediaStorage


@dataclass
class Selection:
    """Which part of the store to export."""

    deployments: tuple[str, ...] = ()
    since: datetime | None = None  # inclusive, by event start
    until: datetime | None = None  # exclusive
    media_url_prefix: str | None = None  # URLs instead of copying files
    public: bool = False  # whether those URLs are publicly readable
    skip_unlocated: bool = False  # leave out deployments without coordinates instead of failing
    db_url: str | None = None  # the PostgreSQL store (``--db``); None: $CAMTRAP_CLOUD_DB or SQLite


@dataclass
class Extract:
    deployments: list[dict[str, Any]] = field(default_factory=list)
    media: list[dict[str, Any]] = field(default_factory=list)
    observations: list[dict[str, Any]] = field(default_factory=list)
    files: list[tuple[Path, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Raw rows the package properties are derived from (taxonomy, capture methods).
    observation_rows: list[dict[str, Any]] = field(default_factory=list)


def open_readonly(ingest_root: Path, url: str | None = None) -> Database:
    """The store, read-only (``cloud_stub.ingest.opening.open_store_db``): the SQLite file under
    ``ingest_root``, or the PostgreSQL server ``url`` (or ``$CAMTRAP_CLOUD_DB``) names. A missing
    SQLite file is an ``ExportError``; a damaged, unreadable or unreachable store, or a server
    without ingest tables, a ``StoreError`` naming the file or the server."""
    from cloud_stub.ingest.opening import database_url, open_store_db, store_path

    db_path = store_path(ingest_root)
    if database_url(url) is None and not db_path.is_file():
        raise ExportError(f"no ingest store at {db_path} (run camtrap-cloud ingest first)")
    return open_store_db(ingest_root, url=url)


def _aware(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ExportError(f"stored datetime without an offset: {text!r}")
    return moment


def _in_window(text: str, selection: Selection) -> bool:
    moment = _aware(text)
    if selection.since and moment < selection.since:
        return False
    return not (selection.until and moment >= selection.until)


def _overlaps(dep: dict[str, Any], selection: Selection) -> bool:
    start, end = _aware(dep["deployment_start"]), _aware(dep["deployment_end"])
    if selection.since and end < selection.since:
        return False
    return not (selection.until and start >= selection.until)


def _tags(pairs: Iterable[tuple[str, Any]]) -> str | None:
    # Camtrap DP's convention for tags: "key:value | key:value".
    text = " | ".join(
        f"{key}:{str(value).replace('|', '/')}" for key, value in pairs if value not in (None, "")
    )
    return text or None


def _int(value: Any) -> int | None:
    return None if value is None else round(float(value))


def _bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _joined(*texts: str | None) -> str | None:
    return "; ".join(t for t in texts if t) or None


def _deployment_row(
    dep: dict[str, Any], clock_trouble: bool, camera: DeploymentCamera
) -> dict[str, Any]:
    get = dep.get
    recorded_issue = get("timestamp_issues")
    return {
        "deploymentID": dep["deployment_id"],
        "locationID": get("location_id"),
        "locationName": get("location_name"),
        "latitude": get("latitude"),
        "longitude": get("longitude"),
        "coordinateUncertainty": _int(get("coordinate_uncertainty")),
        "deploymentStart": camtrap_datetime(dep["deployment_start"]),
        "deploymentEnd": camtrap_datetime(dep["deployment_end"]),
        "setupBy": get("setup_by"),
        "cameraID": camera.camera_id,
        "cameraModel": camera.camera_model,
        "cameraDelay": _int(get("camera_delay")),
        "cameraHeight": get("camera_height"),
        "cameraDepth": get("camera_depth"),
        "cameraTilt": _int(get("camera_tilt")),
        "cameraHeading": _int(get("camera_heading")),
        "detectionDistance": get("detection_distance"),
        # Recorded by provisioning, or known from ingest: a frame taken on an unsynced clock
        # (or an imported camera's uncorrected one).
        "timestampIssues": bool(recorded_issue) or clock_trouble,
        "baitUse": _bool(get("bait_use")),
        "featureType": get("feature_type"),
        "habitat": get("habitat"),
        "deploymentGroups": get("deployment_groups"),
        "deploymentTags": get("deployment_tags"),
        "deploymentComments": _joined(get("deployment_comments"), camera.comment),
    }


def _media_row(
    m: dict[str, Any], path: str, public: bool, thumbnail: bool, event: dict[str, Any]
) -> dict[str, Any]:
    exif = json.loads(m["exif_data"]) if m.get("exif_data") else None
    comments = _tags(
        [
            ("clockSource", m["clock_source"]),
            ("clockSynced", "true" if m["clock_synced"] else "false"),
            # The timestamp is corrected; the camera's own time stays in exifData.
            ("clockCorrection", clock_correction(exif, event.get("clock_offset_s"))),
            ("importedFrom", event.get("import_source")),
            ("irOn", "true" if m["ir_on"] else "false"),
            ("sha256", m.get("thumbnail_sha256") if thumbnail else m.get("sha256")),
            ("file", "thumbnail only, full-resolution file not uploaded" if thumbnail else None),
        ]
    )
    return {
        "mediaID": m["media_id"],
        "deploymentID": m["deployment_id"],
        "captureMethod": m["capture_method"],
        "timestamp": camtrap_datetime(m["timestamp"]),
        "filePath": path,
        "filePublic": public,
        "fileName": m["file_name"],
        "fileMediatype": "image/jpeg" if thumbnail else m["file_mediatype"],
        "exifData": exif,
        "favorite": None,
        "mediaComments": comments,
    }


def _observation_row(o: dict[str, Any]) -> dict[str, Any]:
    probability = o.get("classification_probability")
    return {
        "observationID": o["observation_id"],
        "deploymentID": o["deployment_id"],
        "mediaID": o.get("media_id"),
        "eventID": o["event_id"],
        "eventStart": camtrap_datetime(o["event_start"]),
        "eventEnd": camtrap_datetime(o["event_end"]),
        "observationLevel": o["observation_level"],
        "observationType": o["observation_type"],
        "scientificName": o.get("scientific_name"),
        "count": o.get("count"),
        "bboxX": o.get("bbox_x"),
        "bboxY": o.get("bbox_y"),
        "bboxWidth": o.get("bbox_width"),
        "bboxHeight": o.get("bbox_height"),
        "classificationMethod": o["classification_method"],
        "classifiedBy": o.get("classified_by"),
        "classificationTimestamp": camtrap_datetime(o.get("classification_timestamp")),
        "classificationProbability": probability,
        "observationTags": _tags(
            [
                ("commonName", o.get("common_name")),
                ("taxonLevel", o.get("taxon_level")),
                ("blankScore", o.get("blank_score")),
                ("reviews", reviewed_id(o)),
            ]
        ),
    }


def _rows(db: Database, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
    return [dict(row) for row in db.execute(sql, tuple(params))]


def _unlocated_text(dep: dict[str, Any], events: list[dict[str, Any]]) -> str:
    """A deployment id, and where it came from when only imports created it."""
    sources = sorted({e["import_source"] for e in events if e.get("import_source")})
    if dep.get("camera_id_recorded") or not sources or any(not e.get("import_id") for e in events):
        return dep["deployment_id"]
    return (
        f"{dep['deployment_id']} (imported from {', '.join(sources)}; "
        "no trap was provisioned for it)"
    )


def _deployments(
    db: Database,
    selection: Selection,
    notes: list[str],
    events: dict[str, list[dict[str, Any]]],
) -> list[dict]:
    deployments = _rows(db, "SELECT * FROM deployments ORDER BY deployment_id")
    if selection.deployments:
        wanted = set(selection.deployments)
        unknown = wanted - {d["deployment_id"] for d in deployments}
        if unknown:
            raise ExportError(f"no such deployment(s) in the store: {', '.join(sorted(unknown))}")
        deployments = [d for d in deployments if d["deployment_id"] in wanted]
    deployments = [d for d in deployments if _overlaps(d, selection)]
    without = [d for d in deployments if d.get("latitude") is None or d.get("longitude") is None]
    unlocated = [d["deployment_id"] for d in without]
    if unlocated and not selection.skip_unlocated:
        named = [_unlocated_text(d, events.get(d["deployment_id"], [])) for d in without]
        imported = named != unlocated
        where = (
            "Record them at provisioning (imported ones with camtrap-cloud export locate "
            "DEPLOYMENT --root ROOT --latitude LAT --longitude LON)"
            if imported
            else "Record them at provisioning"
        )
        raise ExportError(
            "Camtrap DP requires latitude and longitude for every deployment, and these have "
            f"none recorded: {', '.join(named)}. {where}, export other deployments with "
            "--deployment, or leave these out with --skip-unlocated."
        )
    if unlocated:
        notes.append(
            f"left out {len(unlocated)} deployment(s) without coordinates: " + ", ".join(unlocated)
        )
        deployments = [d for d in deployments if d["deployment_id"] not in set(unlocated)]
    return deployments


def _present(store: MediaStorage, relative: str | None) -> bool:
    """Whether the file is there to export. A local file is checked; an object store's row is
    trusted (ingest records a file only once its upload returned), sparing a request each."""
    if not relative:
        return False
    local = store.local_path(relative)
    return local is None or local.is_file()


def https_url(url: str) -> str:
    """A ``gs://bucket/key`` as the HTTPS address Camtrap DP readers can follow."""
    if url.startswith("gs://"):
        return "https://storage.googleapis.com/" + url.removeprefix("gs://")
    return url


def extract(ingest_root: Path, selection: Selection) -> Extract:
    """The Camtrap DP rows (and files to copy) for ``selection`` of the store at ``ingest_root``."""
    out = Extract()
    db = open_readonly(ingest_root, selection.db_url)
    try:
        store = open_store_media(db, Path(ingest_root))
        by_deployment: dict[str, list[dict[str, Any]]] = {}
        for e in _rows(db, "SELECT * FROM events ORDER BY event_start, event_id"):
            by_deployment.setdefault(e["deployment_id"], []).append(e)
        deployments = _deployments(db, selection, out.notes, by_deployment)
        dep_ids = {d["deployment_id"] for d in deployments}
        media = [
            m
            for m in _rows(db, "SELECT * FROM media ORDER BY timestamp, seq, media_id")
            if m["deployment_id"] in dep_ids and _in_window(m["timestamp"], selection)
        ]
        observations = [
            o
            for o in _rows(db, "SELECT * FROM observations ORDER BY event_start, observation_id")
            if o["deployment_id"] in dep_ids and _in_window(o["event_start"], selection)
        ]
    finally:
        db.close()

    windowed = {
        d: [e for e in by_deployment.get(d, []) if _in_window(e["event_start"], selection)]
        for d in dep_ids
    }
    # Every event of the deployments: a frame inside the window may belong to a burst that
    # started just before it.
    events = {e["event_id"]: e for d in dep_ids for e in by_deployment.get(d, [])}
    unsynced = {m["deployment_id"] for m in media if clock_trouble(m)}
    out.deployments = [
        _deployment_row(
            d,
            d["deployment_id"] in unsynced,
            deployment_camera(d, windowed[d["deployment_id"]]),
        )
        for d in deployments
    ]

    exported_media: set[str] = set()
    missing = thumbnails_only = 0
    for m in media:
        relative = m.get("file_path")
        thumbnail = False
        if not _present(store, relative):
            relative, thumbnail = m.get("thumbnail_path"), True
        if not relative or not _present(store, relative):
            missing += 1
            continue
        thumbnails_only += thumbnail
        local = store.local_path(relative)
        if selection.media_url_prefix:
            path = f"{selection.media_url_prefix.rstrip('/')}/{relative}"
        elif local is None:
            # The file is in the bucket: the package points at it instead of copying it.
            path = https_url(store.url(relative))
        else:
            path = f"media/{relative}"
            out.files.append((local, path))
        event = events.get(m["event_id"], {})
        out.media.append(_media_row(m, path, selection.public, thumbnail, event))
        exported_media.add(m["media_id"])
    if thumbnails_only:
        out.notes.append(f"{thumbnails_only} media item(s) have only their thumbnail")
    if missing:
        out.notes.append(
            f"left out {missing} media item(s) whose files were never uploaded, and their "
            "media-level observations"
        )

    chosen = preferred_observations(observations)
    dropped = 0
    for o in chosen:
        if o.get("media_id") is not None and o["media_id"] not in exported_media:
            dropped += 1
            continue
        out.observations.append(_observation_row(o))
        out.observation_rows.append(o)
    superseded = len(observations) - len(chosen)
    if superseded:
        out.notes.append(f"{superseded} machine observation(s) superseded by human review")
    return out
