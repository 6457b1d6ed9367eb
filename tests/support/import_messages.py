"""Capture messages as ``camtrap import`` sends them, and a way to feed them to real ingest.

An imported event names its camera (EXIF Make/Model/serial, the ``--camera`` name) and its
import; each media keeps the card's file name and the original EXIF strings, and its
``timestamp`` is the corrected time. File names repeat across cards (every camera starts at
IMG_0001.JPG), so the builders reuse them on purpose.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cloud_stub.ingest.core import Incoming, Ingestor
from device.contracts.protocol import (
    CameraInfo,
    CaptureMeta,
    Event,
    ImportInfo,
    Media,
    MediaKind,
    Observation,
    encode,
    split_media,
)
from tests.support.browser import jpeg

RECONYX = CameraInfo(make="RECONYX", model="HF2X", serial="H2X0917A", name="north-gate")
BROWNING = CameraInfo(make="Browning", model="BTC-8E", serial=None, name="creek")


@dataclass
class Card:
    """One import: a card (or folder) read by ``camtrap import`` with one clock correction."""

    source: str
    camera: CameraInfo
    offset_s: float = 0.0
    method: str | None = None  # None (no correction) | "offset" | "reference"
    reference: str | None = None
    import_id: str = field(default_factory=lambda: f"import-{uuid.uuid4()}")

    @property
    def clock_source(self) -> str:
        return "trailcam" if self.method is None else f"trailcam+{self.method}"


@dataclass
class Sent:
    meta: CaptureMeta
    files: list[bytes]  # full-resolution bytes per media, in seq order


def _exif_time(moment: datetime) -> tuple[str, str]:
    """EXIF DateTimeOriginal and OffsetTimeOriginal as a camera writes them."""
    offset = moment.strftime("%z")
    return moment.strftime("%Y:%m:%d %H:%M:%S"), f"{offset[:3]}:{offset[3:]}"


def imported_capture(
    device_id: str,
    card: Card,
    *,
    deployment_id: str,
    camera_time: datetime,
    first_number: int = 1,
    frames: int = 3,
    species: str | None = "Vulpes vulpes",
    colour: tuple[int, int, int] = (150, 90, 40),
) -> Sent:
    """A Reconyx-style burst of ``frames`` photos IMG_<n>.JPG, the camera's clock reading
    ``camera_time`` at the first; the event's times are shifted by the card's offset."""
    corrected = camera_time + timedelta(seconds=card.offset_s)
    event_id = f"imp-{uuid.uuid4()}"
    event = Event(
        event_id=event_id,
        deployment_id=deployment_id,
        capture_method="activityDetection",
        trigger_source="pir",
        event_start=corrected,
        event_end=corrected + timedelta(seconds=frames - 1),
        frame_count=frames,
        clock_source=card.clock_source,
        clock_synced=card.method == "reference",
        camera=card.camera,
        imported=ImportInfo(
            import_id=card.import_id, source=card.source, clock_offset_s=card.offset_s
        ),
    )
    media: list[Media] = []
    files: list[bytes] = []
    for seq in range(frames):
        name = f"IMG_{first_number + seq:04d}.JPG"
        data = jpeg((320, 240), colour, f"{card.source} {name}")
        sha = hashlib.sha256(data).hexdigest()
        taken, offset = _exif_time(camera_time + timedelta(seconds=seq))
        exif: dict[str, Any] = {
            "DateTimeOriginal": taken,
            "SubSecTimeOriginal": "00",
            "OffsetTimeOriginal": offset,
            "Make": card.camera.make,
            "Model": card.camera.model,
            "MakerNotes": {"Sequence": f"{seq + 1} of {frames}", "TriggerMode": "M"},
        }
        if card.camera.serial:
            exif["BodySerialNumber"] = card.camera.serial
        if card.method is not None:
            correction: dict[str, Any] = {"offsetS": card.offset_s, "method": card.method}
            if card.reference:
                correction["reference"] = card.reference
            exif["camtrapClockCorrection"] = correction
        media.append(
            Media(
                media_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"sha256:{sha}")),
                event_id=event_id,
                deployment_id=deployment_id,
                seq=seq,
                capture_method="activityDetection",
                timestamp=corrected + timedelta(seconds=seq),
                file_name=name,
                sha256=sha,
                size=len(data),
                width=320,
                height=240,
                exif_data=exif,
                clock_source=card.clock_source,
                clock_synced=card.method == "reference",
            )
        )
        files.append(data)
    observations = [
        Observation(
            observation_id=f"obs-{uuid.uuid4()}",
            deployment_id=deployment_id,
            event_id=event_id,
            event_start=event.event_start,
            event_end=event.event_end or event.event_start,
            observation_level="event",
            observation_type="animal" if species else "blank",
            scientific_name=species,
            count=1 if species else None,
            classified_by="efficientnet-lite0-imagenet@1.0.0",
            classification_timestamp=corrected,
            classification_probability=0.9,
        )
    ]
    meta = CaptureMeta(
        device_id=device_id,
        item_id=f"capture:{event_id}",
        event=event,
        media=media,
        observations=observations,
    )
    return Sent(meta, files)


def feed(ingestor: Ingestor, sent: Sent, *, thumbnails: bool = True) -> None:
    """The capture message, then every file in chunks, through the real ingest path."""
    device = sent.meta.device_id
    _one(ingestor, device, "meta", encode(sent.meta))
    for media, data in zip(sent.meta.media, sent.files, strict=True):
        kinds: tuple[MediaKind, ...] = ("thumbnail", "full") if thumbnails else ("full",)
        for kind in kinds:
            payload = data if kind == "full" else jpeg((80, 60), (90, 90, 90), media.file_name)
            for chunk in split_media(
                payload,
                max_payload_bytes=16 * 1024,
                device_id=device,
                item_id=f"{kind}:{media.media_id}",
                media_id=media.media_id,
                kind=kind,
            ):
                _one(ingestor, device, "media", encode(chunk))


def _one(ingestor: Ingestor, device: str, subtopic: str, payload: bytes) -> None:
    outcome = ingestor.handle(
        Incoming(f"camtrap/{device}/up/{subtopic}", device, subtopic, payload)
    )
    assert outcome.rejected is None, outcome.rejected
