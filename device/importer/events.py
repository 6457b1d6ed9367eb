"""Photos into events: by the camera's own sequence numbers when it records them, else by time.

A Reconyx writes "1 of 3", "2 of 3", "3 of 3" and an event number into each photo of a
trigger: those photos are one event, whatever the time between them. Other cameras record
nothing of the kind, so photos of one camera closer in time than ``import.sequence_gap_s``
are one event (Agouti calls this the sequence cutoff; docs/trail-cameras.md says why 60 s).
An event is cut after ``import.max_event_s`` or ``import.max_event_frames`` either way, so an
animal that stays an hour in front of the camera is several events, not one too big to send.

Photos of different cameras (one folder holding several cards) are never one event.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from device.contracts.protocol import CaptureMethod, TriggerSource

BY_SEQUENCE = "sequence"
BY_TIME = "time gap"


@dataclass(frozen=True)
class CameraKey:
    make: str | None
    model: str | None
    serial: str | None

    def as_dict(self, name: str | None) -> dict[str, str | None]:
        return {"make": self.make, "model": self.model, "serial": self.serial, "name": name}


@dataclass(frozen=True)
class Candidate:
    """A photo read from the card, not stored yet."""

    rel: str
    sha256: str
    size: int
    taken_at: datetime  # aware, corrected
    camera: CameraKey
    sequence: tuple[int, int] | None
    event_number: int | None
    capture_method: CaptureMethod | None  # from the maker data; None: not known
    width: int | None
    height: int | None
    exif: dict[str, Any]


@dataclass(frozen=True)
class PlannedEvent:
    photos: tuple[Candidate, ...]
    grouped_by: str

    @property
    def camera(self) -> CameraKey:
        return self.photos[0].camera

    @property
    def start(self) -> datetime:
        return self.photos[0].taken_at

    @property
    def end(self) -> datetime:
        return self.photos[-1].taken_at

    @property
    def capture_method(self) -> CaptureMethod:
        """timeLapse only when the camera said so of its photos; a motion trigger (or a camera
        that does not say) is activityDetection."""
        said = {p.capture_method for p in self.photos if p.capture_method is not None}
        return "timeLapse" if said == {"timeLapse"} else "activityDetection"

    @property
    def trigger_source(self) -> TriggerSource:
        said = {p.capture_method for p in self.photos}
        if said == {"timeLapse"}:
            return "timelapse"
        if said == {"activityDetection"}:
            return "pir"  # a trail camera's motion trigger is its PIR
        return "unknown"


def group_events(
    photos: Iterable[Candidate], *, gap_s: float, max_event_s: float, max_frames: int
) -> list[PlannedEvent]:
    """The events of ``photos``, each in time order, the events in time order."""
    ordered = sorted(
        photos,
        key=lambda p: (
            _camera_order(p.camera),
            p.taken_at,
            p.sequence[0] if p.sequence else 0,
            p.rel.lower(),
        ),
    )
    events: list[PlannedEvent] = []
    current: list[Candidate] = []
    how = BY_TIME
    for photo in ordered:
        if current and _continues(current, photo, gap_s, max_event_s, max_frames):
            current.append(photo)
            continue
        if current:
            events.append(PlannedEvent(tuple(current), how))
        current = [photo]
        how = BY_SEQUENCE if photo.sequence is not None else BY_TIME
    if current:
        events.append(PlannedEvent(tuple(current), how))
    events.sort(key=lambda e: (e.start, e.photos[0].rel.lower()))
    return events


def _continues(
    current: list[Candidate], photo: Candidate, gap_s: float, max_event_s: float, max_frames: int
) -> bool:
    first, last = current[0], current[-1]
    if photo.camera != last.camera or len(current) >= max_frames:
        return False
    if (photo.taken_at - first.taken_at).total_seconds() > max_event_s:
        return False
    if last.sequence is not None and photo.sequence is not None:
        # The camera's own numbering decides: the next number of the same trigger.
        return (
            photo.sequence[0] == last.sequence[0] + 1
            and photo.sequence[1] == last.sequence[1]
            and photo.event_number == last.event_number
        )
    if (last.sequence is None) != (photo.sequence is None):
        return False
    return (photo.taken_at - last.taken_at).total_seconds() <= gap_s


def _camera_order(camera: CameraKey) -> tuple[str, str, str]:
    return (camera.make or "", camera.model or "", camera.serial or "")
