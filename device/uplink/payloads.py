"""Outbox items -> protocol messages, read through the store's repositories and the files.

``capture_meta`` turns an event with its media and observations into one ``CaptureMeta``;
``media_file`` finds the bytes behind a thumbnail or media item. Anything that cannot be built
raises ``Unready`` (try again later) or ``Undeliverable`` (never will be: the item goes dead
with the reason), so the drain loop never crashes on a bad row or a lost file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from device.protocol import (
    CameraInfo,
    CaptureMeta,
    Event,
    ImportInfo,
    Media,
    Observation,
    utc_now,
)
from device.store.db import Source
from device.store.events import Events
from device.store.imports import Imports
from device.store.media import Media as MediaTable
from device.store.media import MediaRow
from device.store.observations import ObservationRecord, Observations
from device.store.vocabulary import EventState, MediaState


class Unready(Exception):
    """Not yet: the event is still open or being classified."""


class Undeliverable(Exception):
    """Never: the reason goes into the outbox row for a human."""


@dataclass(frozen=True)
class MediaFile:
    media_id: str
    event_id: str
    kind: str  # "thumbnail" | "full"
    data: bytes
    sha256: str | None  # what the database says the file's hash is
    mediatype: str


def capture_meta(
    source: Source, device_id: str, item_id: str, event_id: str, vision: bool
) -> CaptureMeta:
    ev = Events(source).get(event_id)
    if ev is None:
        raise Undeliverable(f"event {event_id} has no row")
    ready = ev.state is EventState.CLASSIFIED or (ev.state is EventState.CLOSED and not vision)
    if not ready:
        raise Unready(f"event {event_id} is {ev.state}")
    media = MediaTable(source).for_event(event_id)
    observations = Observations(source).for_event(event_id)
    start = ev.started_at
    end = ev.ended_at or start
    # A photo imported from a trail camera's card travels with its camera, its import and its
    # original name and EXIF (docs/trail-cameras.md); a capture of the trap's own does not.
    imported = Imports(source).event_facts(event_id) if ev.import_id else None
    originals = Imports(source).media_facts([m.media_id for m in media]) if imported else {}
    try:
        return CaptureMeta(
            device_id=device_id,
            item_id=item_id,
            sent_at=utc_now(),
            event=Event(
                event_id=event_id,
                deployment_id=ev.deployment_id,
                capture_method=ev.capture_method,
                trigger_source=ev.trigger_source,
                event_start=start,
                event_end=end,
                frame_count=ev.frame_count,
                clock_source=ev.clock_source,
                clock_synced=ev.clock_synced,
                blank_score=ev.blank_score,
                camera=_camera(imported),
                imported=_import(imported),
            ),
            media=[_media(m, ev.deployment_id, originals.get(m.media_id)) for m in media],
            observations=[_observation(o, ev.deployment_id, start, end) for o in observations],
        )
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"])
        raise Undeliverable(f"metadata of {event_id} is invalid: {where}: {err['msg']}") from exc


# CameraInfo's limit per field. A camera's EXIF may say more (a padded Model, a long serial):
# cut here, whole in the media's exifData, so the event is still delivered.
CAMERA_TEXT_CHARS = 64
# Media.file_name refuses these; a folder on a Linux disk may hold them in a name.
_UNSENDABLE_IN_NAMES = str.maketrans({"/": "_", "\\": "_", "\x00": "_"})


def _camera(imported: dict[str, Any] | None) -> CameraInfo | None:
    camera = imported.get("camera") if imported else None
    if not camera:
        return None
    return CameraInfo(
        **{k: v[:CAMERA_TEXT_CHARS] if isinstance(v, str) else v for k, v in camera.items()}
    )


def _import(imported: dict[str, Any] | None) -> ImportInfo | None:
    if not imported:
        return None
    return ImportInfo(
        import_id=imported["import_id"],
        source=imported["source"][:255],
        clock_offset_s=imported["clock_offset_s"],
    )


def _media(m: MediaRow, deployment_id: str, original: dict[str, Any] | None = None) -> Media:
    card_name = (original or {}).get("file_name")
    name = card_name.translate(_UNSENDABLE_IN_NAMES)[:255] if card_name else f"{m.media_id}.jpg"
    return Media(
        media_id=m.media_id,
        event_id=m.event_id,
        deployment_id=deployment_id,
        seq=m.seq,
        capture_method=m.capture_method,
        timestamp=m.captured_at,
        file_name=name,
        exif_data=(original or {}).get("exif_data"),
        file_mediatype=m.file_mediatype,
        sha256=m.sha256,
        size=m.size,
        width=m.width,
        height=m.height,
        clock_source=m.clock_source,
        clock_synced=m.clock_synced,
        ir_on=m.ir_on,
    )


def _observation(
    o: ObservationRecord, deployment_id: str, start: datetime, end: datetime
) -> Observation:
    return Observation(
        observation_id=o.observation_id,
        deployment_id=deployment_id,
        event_id=o.event_id,
        media_id=o.media_id,
        event_start=start,
        event_end=end,
        observation_level="media" if o.media_id else "event",
        observation_type=o.observation_type,
        scientific_name=o.scientific_name,
        common_name=o.common_name,
        taxon_level=o.taxon_level,
        taxonomy=o.taxonomy,
        count=o.count,
        bbox_x=o.bbox_x,
        bbox_y=o.bbox_y,
        bbox_width=o.bbox_width,
        bbox_height=o.bbox_height,
        classification_method=o.classification_method,
        classified_by=o.classified_by,
        classification_timestamp=o.classification_timestamp,
        classification_probability=o.classification_probability,
        blank_score=o.blank_score,
        details=o.details,
    )


def media_file(data_dir: Path, row: MediaRow | None, kind: str, media_id: str) -> MediaFile:
    """The bytes of a thumbnail (``kind="thumbnail"``) or full-resolution item."""
    if row is None:
        raise Undeliverable(f"media {media_id} has no row")
    full = kind != "thumbnail"
    rel = row.path if full else row.thumb_path
    if full and row.state is not MediaState.STORED:
        raise Undeliverable(f"media {media_id} is {row.state}, its file is not kept")
    if not rel:
        raise Undeliverable(f"media {media_id} has no {'file' if full else 'thumbnail'} path")
    try:
        data = (data_dir / rel).read_bytes()
    except OSError as exc:
        raise Undeliverable(f"{rel}: cannot read: {exc.strerror or exc}") from exc
    return MediaFile(
        media_id=media_id,
        event_id=row.event_id,
        kind="full" if full else "thumbnail",
        data=data,
        sha256=row.sha256 if full else row.thumb_sha256,
        mediatype=row.file_mediatype if full else "image/jpeg",
    )
