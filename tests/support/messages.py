"""Builders for protocol messages in tests: realistic captures with stable, unique ids."""

from __future__ import annotations

import hashlib
import os
import uuid
from datetime import UTC, datetime, timedelta

from device.protocol import CaptureMeta, Event, Media, Observation

T0 = datetime(2026, 5, 1, 21, 30, tzinfo=UTC)


def capture(
    device_id: str,
    *,
    deployment_id: str = "dep-1",
    frames: int = 2,
    full_files: list[bytes] | None = None,
    species: str | None = "Vulpes vulpes",
) -> tuple[CaptureMeta, list[bytes]]:
    """A burst of ``frames`` media with one observation per frame; returns (meta, file bytes)."""
    files = full_files or [os.urandom(3000 + 17 * i) for i in range(frames)]
    event_id = str(uuid.uuid4())
    event = Event(
        event_id=event_id,
        deployment_id=deployment_id,
        capture_method="activityDetection",
        trigger_source="pir",
        event_start=T0,
        event_end=T0 + timedelta(seconds=len(files)),
        frame_count=len(files),
        clock_source="rtc",
        clock_synced=True,
    )
    media, observations = [], []
    for seq, data in enumerate(files):
        media_id = str(uuid.uuid4())
        media.append(
            Media(
                media_id=media_id,
                event_id=event_id,
                deployment_id=deployment_id,
                seq=seq,
                capture_method="activityDetection",
                timestamp=T0 + timedelta(seconds=seq),
                file_name=f"{media_id}.jpg",
                sha256=hashlib.sha256(data).hexdigest(),
                size=len(data),
                width=2304,
                height=1296,
                clock_source="rtc",
                clock_synced=True,
            )
        )
        observations.append(
            Observation(
                observation_id=str(uuid.uuid4()),
                deployment_id=deployment_id,
                event_id=event_id,
                media_id=media_id,
                event_start=event.event_start,
                event_end=event.event_end,
                observation_level="media",
                observation_type="animal" if species else "blank",
                scientific_name=species,
                count=1 if species else None,
                classified_by="efficientnet-lite0@1",
                classification_timestamp=T0,
                classification_probability=0.91,
            )
        )
    meta = CaptureMeta(
        device_id=device_id,
        item_id=f"capture:{event_id}",
        event=event,
        media=media,
        observations=observations,
    )
    return meta, files
