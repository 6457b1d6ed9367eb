"""Labelled photos grouped into the events (bursts) and sites the trap would have seen.

**Events.** When the labels have an ``event`` column, rows that share a value are one event
and rows without a value are single-frame events. Otherwise photos are grouped by EXIF
DateTimeOriginal (with SubSecTimeOriginal when present): within a site, photos sorted by time
form one event while each is at most ``gap_s`` after the previous one (``vision.
sequence_cutoff_s``, Agouti's "sequence cutoff"). A photo without an EXIF time is an event of
its own. Times are the camera's wall clock; the offset tag is ignored, since all photos of one
camera share its clock and many cameras write none.

**Sites.** The learnt state of the vision engine (the background model, the memory of the
empty scene) belongs to one camera at one place, so it is reset between sites. A site is the
``deployment`` column when the labels have one, else ``site``, else ``dataset``, else the
whole folder. Sites are visited in the order they first appear in the labels, and a site's
events in time order (by their first frame; events without times after, by file name): the
order a trap would have met them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from device.contracts.photo_time import exif_taken_at
from device.vision.evaluate import Sample

EVENT_COLUMN = "event"
SITE_COLUMNS = ("deployment", "site", "dataset")
WHOLE_FOLDER = "(whole folder)"


@dataclass
class Frame:
    sample: Sample
    path: Path
    taken_at: datetime | None


@dataclass
class PlannedEvent:
    event_id: str
    site: str
    frames: list[Frame] = field(default_factory=list)

    @property
    def first_time(self) -> datetime | None:
        times = [f.taken_at for f in self.frames if f.taken_at is not None]
        return min(times) if times else None


@dataclass
class EventPlan:
    events: list[PlannedEvent]  # sites in first-seen order, each site's events in time order
    grouping: str  # how events were formed, for the report
    site_rule: str  # how sites were told apart, for the report

    @property
    def sites(self) -> list[str]:
        return list(dict.fromkeys(e.site for e in self.events))


def site_column(columns: Sequence[str]) -> str | None:
    return next((c for c in SITE_COLUMNS if c in columns), None)


def plan_events(
    samples: Sequence[Sample], folder: Path, gap_s: float, columns: Sequence[str]
) -> EventPlan:
    """Group ``samples`` (rows of labels.csv, whose header is ``columns``) into events."""
    by_site = site_column(columns)
    frames = [
        Frame(s, folder / s.file, exif_taken_at(folder / s.file))
        for s in samples  # every frame's EXIF is read: it orders events even with an event column
    ]
    sites: dict[str, list[Frame]] = {}
    for frame in frames:
        site = (frame.sample.column(by_site) if by_site else None) or (
            f"(no {by_site})" if by_site else WHOLE_FOLDER
        )
        sites.setdefault(site, []).append(frame)
    events: list[PlannedEvent] = []
    for site, members in sites.items():
        if EVENT_COLUMN in columns:
            grouped = _by_event_column(site, members)
        else:
            grouped = _by_time_gap(site, members, gap_s)
        events += sorted(grouped, key=_event_order)
    grouping = (
        "the event column (rows without a value are single-frame events)"
        if EVENT_COLUMN in columns
        else f"EXIF DateTimeOriginal, gap <= {gap_s:g} s (photos without it are single events)"
    )
    site_rule = f"the {by_site} column" if by_site else "the whole folder is one site"
    return EventPlan(events, grouping, site_rule)


def _frame_order(frame: Frame) -> tuple[bool, datetime, str]:
    return (frame.taken_at is None, frame.taken_at or datetime.min, frame.sample.file)


def _event_order(event: PlannedEvent) -> tuple[bool, datetime, str]:
    first = event.first_time
    return (first is None, first or datetime.min, event.frames[0].sample.file)


def _by_event_column(site: str, frames: list[Frame]) -> list[PlannedEvent]:
    events: dict[str, PlannedEvent] = {}
    for frame in frames:
        key = frame.sample.column(EVENT_COLUMN)
        event_id = key if key is not None else frame.sample.file
        events.setdefault(event_id, PlannedEvent(event_id, site)).frames.append(frame)
    for event in events.values():
        event.frames.sort(key=_frame_order)
    return list(events.values())


def _by_time_gap(site: str, frames: list[Frame], gap_s: float) -> list[PlannedEvent]:
    timed = sorted((f for f in frames if f.taken_at is not None), key=_frame_order)
    events: list[PlannedEvent] = []
    previous: datetime | None = None
    for frame in timed:
        assert frame.taken_at is not None
        if previous is None or (frame.taken_at - previous).total_seconds() > gap_s:
            events.append(PlannedEvent(f"{site}/{frame.sample.file}", site))
        events[-1].frames.append(frame)
        previous = frame.taken_at
    for frame in frames:
        if frame.taken_at is None:
            events.append(PlannedEvent(f"{site}/{frame.sample.file}", site, [frame]))
    return events
