"""A device database with real captures in it, written by the real store, for uplink tests.

``queue_captures`` commits bursts through ``MediaStore`` (files first, then rows and outbox
items, exactly as the agent does); ``classify`` then plays the vision worker's part for an
event through the store's own door, as the worker does: a thumbnail per frame
(``MediaStore.write_thumbnail``) and a verdict (``MediaStore.record_verdict``), so the
observations, thumbnail rows and outbox items, the blank-media policy of the store's settings
and the event's state are exactly what the agent would record.
"""

from __future__ import annotations

import io
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image

from device.capture.types import ACTIVITY, CapturedFrame, EventClosed
from device.clock import ClockState
from device.config import Settings
from device.hardware.camera import Frame
from device.store.store import MediaStore
from device.store.verdicts import Verdict
from device.store.vocabulary import MediaState
from device.vision.engine import ObservationRow

T0 = datetime(2026, 5, 1, 21, 30, tzinfo=UTC)


def noise_jpeg(width: int, height: int, seed: int, quality: int = 90) -> bytes:
    """Random pixels compress badly, so a JPEG of them is about as big as such a file gets."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=quality)
    return out.getvalue()


@dataclass
class Burst:
    event_id: str
    media_ids: list[str]


def queue_captures(
    store: MediaStore,
    count: int,
    *,
    frames: int = 2,
    size: tuple[int, int] = (160, 120),
    seed: int = 0,
    start: datetime = T0,
    trigger_source: str = "pir",
) -> list[Burst]:
    """Commit ``count`` closed bursts of ``frames`` real JPEGs each."""
    bursts = []
    for n in range(count):
        event_id = str(uuid.uuid4())
        at = start + timedelta(minutes=n)
        items: list[CapturedFrame | EventClosed] = []
        media_ids = []
        for seq in range(frames):
            media_id = str(uuid.uuid4())
            media_ids.append(media_id)
            jpeg = noise_jpeg(*size, seed=seed * 100_000 + n * 100 + seq)
            items.append(
                CapturedFrame(
                    event_id=event_id,
                    media_id=media_id,
                    seq=seq,
                    captured_at=at + timedelta(seconds=seq),
                    captured_mono=time.monotonic(),
                    trigger_mono=None,
                    capture_method=ACTIVITY,
                    trigger_source=trigger_source,
                    clock=ClockState("rtc", True),
                    ir_on=False,
                    frame=Frame(jpeg=jpeg, lores=None, width=size[0], height=size[1]),
                )
            )
        items.append(EventClosed(event_id, at + timedelta(seconds=frames), frames, ACTIVITY))
        store.commit(items)
        bursts.append(Burst(event_id, media_ids))
    return bursts


def classify(
    store: MediaStore,
    burst: Burst,
    *,
    kind: str = "animal",
    probability: float = 0.9,
    thumbnail: bytes | None = None,
    blank_score: float | None = None,
    delete_removed: bool = True,
) -> list[Path]:
    """What the vision worker records for an event, with a thumbnail per stored frame (its
    bytes ``thumbnail``, or a small noise JPEG); the files the policy removes are returned,
    and deleted unless ``delete_removed`` is false. ``blank_score`` defaults to 0.99 for a
    blank and 0.01 otherwise; a blank's classification probability is its blank score."""
    score = blank_score if blank_score is not None else (0.99 if kind == "blank" else 0.01)
    todo = store.event_to_classify(burst.event_id)
    assert todo is not None, f"event {burst.event_id} is not waiting for classification"
    row = ObservationRow(
        media_id=None,
        observation_type=kind,
        scientific_name="Vulpes vulpes" if kind == "animal" else None,
        common_name="red fox" if kind == "animal" else None,
        taxon_level="species" if kind == "animal" else None,
        taxonomy=None,
        count=1 if kind == "animal" else None,
        classification_probability=score if kind == "blank" else probability,
        blank_score=score,
        classified_by="test-model@1",
        details={"test": True},
    )
    thumbs = {
        frame.media_id: store.write_thumbnail(
            frame, thumbnail if thumbnail is not None else noise_jpeg(64, 48, seed=i)
        )
        for i, frame in enumerate(todo.media)
        if frame.state is MediaState.STORED
    }
    removed = store.record_verdict(
        Verdict(
            event_id=burst.event_id,
            observations=[row],
            blank=kind == "blank",
            blank_score=row.blank_score,
            thumbnails=thumbs,
            classified_at=T0,
        )
    )
    if delete_removed:
        for path in removed:
            path.unlink(missing_ok=True)
    return removed


def open_store(settings: Settings) -> MediaStore:
    store = MediaStore(settings)
    store.open()
    assert store.db is not None, store.last_error
    return store


def mqtt_trap_settings(root: Path, broker, device_id: str = "test-trap", **uplink) -> Settings:  # type: ignore[no-untyped-def]
    """Trap settings whose uplink reaches ``broker`` (a tests.support.broker.Broker)."""
    from tests.support.world import trap_settings

    cert, key = broker.client_cert(device_id)
    mqtt = {
        "host": "127.0.0.1",
        "port": broker.port,
        "ca_file": broker.ca_file,
        "cert_file": cert,
        "key_file": key,
        "connect_timeout_s": 5,
    }
    mqtt.update(uplink.pop("mqtt", {}))
    return trap_settings(
        root,
        device={"id": device_id, "deployment_id": "dep-1"},
        uplink={"transport": "mqtt", "network_manager": False, "mqtt": mqtt, **uplink},
    )


def write_config(settings: Settings, path: Path) -> Path:
    """The settings as a TOML file a ``camtrap`` subprocess can read."""
    from device.config import to_toml

    data = settings.model_dump(mode="json")
    data["uplink"]["mqtt"].pop("password", None)
    from tests.support.ports import check_config_ports

    check_config_ports(data, str(path))
    path.write_text(to_toml(data))
    return path
