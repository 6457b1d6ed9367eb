"""Where an event came from: a trap's own capture, or a trail-camera card ``camtrap import``
read. The event page shows it and ``/api/events/<eventID>`` returns it, from the same dict."""

from __future__ import annotations

import json
from typing import Any

from cloud_stub.export.cameras import camera_of
from cloud_stub.export.clocks import clock_correction, clock_trouble


def _exif(media: dict[str, Any]) -> dict[str, Any] | None:
    raw = media.get("exif_data")
    if isinstance(raw, dict):
        return raw
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def provenance(event: dict[str, Any], media: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The camera, the import and its clock correction; ``None`` for the trap's own capture.

    ``event`` is an ingest ``events`` row (an older store without the import columns reads as
    the trap's own), ``media`` its media rows.
    """
    camera = camera_of(event)
    if camera is None:
        return None
    first = media[0] if media else {}
    correction = clock_correction(_exif(first), event.get("clock_offset_s"))
    return {
        "camera": {
            "make": camera.make,
            "model": camera.model,
            "serial": camera.serial,
            "name": camera.name,
            "label": camera.label(),
        },
        "importID": event.get("import_id"),
        "source": event.get("import_source"),
        "clockSource": event["clock_source"],
        "clockOffsetS": event.get("clock_offset_s"),
        "clockCorrection": correction,
        # As the Camtrap DP export's timestampIssues: a hand-set clock nobody corrected.
        "timestampIssues": clock_trouble(event),
    }


def event_json(event: dict[str, Any]) -> dict[str, Any]:
    """An event page's facts as JSON (Camtrap DP names), for scripts: ``/api/events/<id>``."""
    return {
        "eventID": event["event_id"],
        "deploymentID": event["deployment_id"],
        "deviceID": event["device_id"],
        "captureMethod": event["capture_method"],
        "triggerSource": event["trigger_source"],
        "eventStart": event["event_start"],
        "eventEnd": event["event_end"],
        "frameCount": event["frame_count"],
        "clockSource": event["clock_source"],
        "clockSynced": bool(event["clock_synced"]),
        "imported": event["source"],
        "media": [
            {
                "mediaID": m["media_id"],
                "seq": m["seq"],
                "timestamp": m["timestamp"],
                "fileName": m["file_name"],
                "exifData": _exif(m),
                "received": {"full": bool(m["file_path"]), "thumbnail": bool(m["thumbnail_path"])},
            }
            for m in event["media"]
        ],
    }
