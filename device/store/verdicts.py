"""Recording a classification: the verdict and the media policy it implies, in one transaction.

The vision room decides what an event shows; the store decides what that means for the
frames kept and the uploads owed. ``record_verdict`` writes, atomically:

- the observations;
- the thumbnails written for the event (their rows and outbox items), unless the policy
  deletes them;
- the blank-media policy (``vision.blank_media_policy``) for a blank event:

  - ``defer`` (the default) deletes nothing: the frames keep their full resolution and their
    thumbnails, and their uploads move to ``Priority.DEFERRED_BLANK``, which goes after
    everything else and never over a metered link. Retention evicts them first among the
    frames not yet in the cloud, and only when a limit needs the room (``retention``). The
    filter misses animals; a verdict alone must not destroy the frame one is in;
  - ``keep`` keeps the frames and sends them last (``Priority.BLANK_MEDIA``), over any link the
    metered policy allows;
  - ``thumbnail`` evicts the frames and keeps the thumbnails, ``delete`` evicts both: they
    destroy, at once, every frame a wrong verdict holds an animal in. Evicted frames drop
    their unsent uploads.

  The metadata row always stays. A test capture (``trigger_source = 'test'``) was asked for by
  a person: its frames are kept, at their priority, whatever they show;
- the event's state (``classified``) and blank score (retention's order among deferred
  blanks: most confidently blank first).

It returns the files to delete, which the caller deletes only after the commit: deleting
first could lose a frame whose row still says it exists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from device.store import events, media, observations, outbox
from device.store.db import Database
from device.store.events import EventRow
from device.store.media import MediaRow, StoredFile
from device.store.observations import ObservationInput
from device.store.vocabulary import (
    BlankMediaPolicy,
    EventState,
    ItemKind,
    MediaState,
    Priority,
)

TEST_TRIGGER = "test"
# The policies that delete a blank event's frames when its verdict is recorded.
_DESTROYS = (BlankMediaPolicy.THUMBNAIL, BlankMediaPolicy.DELETE)
# Where the uploads of a blank event's frames go under the policies that keep them.
_LAST = {
    BlankMediaPolicy.DEFER: Priority.DEFERRED_BLANK,
    BlankMediaPolicy.KEEP: Priority.BLANK_MEDIA,
}


@dataclass(frozen=True)
class EventToClassify:
    """A closed event and its frames, as the vision worker needs them."""

    event: EventRow
    media: list[MediaRow]


@dataclass(frozen=True)
class Verdict:
    """What the vision room concluded about one event."""

    event_id: str
    observations: Sequence[ObservationInput]  # at least one event-level row
    blank: bool
    blank_score: float | None  # None: no model classified it
    thumbnails: Mapping[str, StoredFile]  # media id -> thumbnail written for it
    classified_at: datetime


def event_to_classify(db: Database, event_id: str) -> EventToClassify | None:
    """The event and its frames if it waits for classification (closed), else None."""
    with db.read() as conn:
        event = events.get(conn, event_id)
        if event is None or event.state is not EventState.CLOSED:
            return None
        return EventToClassify(event, media.for_event(conn, event_id))


def record_verdict(
    db: Database, data_dir: Path, verdict: Verdict, policy: BlankMediaPolicy | str
) -> list[Path]:
    """Record ``verdict`` and apply ``policy`` in one transaction; the files to delete after.

    An event that is no longer waiting for classification (gone, or classified meanwhile) is
    left as it is, and nothing is to be deleted."""
    policy = BlankMediaPolicy(policy)
    removed: list[Path] = []
    with db.write() as conn:
        event = events.get(conn, verdict.event_id)
        if event is None or event.state is not EventState.CLOSED:
            return []
        keep_all = event.trigger_source == TEST_TRIGGER
        if keep_all:
            policy = BlankMediaPolicy.KEEP
        drop_thumbnails = verdict.blank and policy is BlankMediaPolicy.DELETE
        stamp = verdict.classified_at.isoformat()
        for row in verdict.observations:
            observations.insert(conn, verdict.event_id, row, stamp)
        if not drop_thumbnails:
            for media_id, thumb in verdict.thumbnails.items():
                media.set_thumbnail(conn, media_id, thumb)
                outbox.Outbox.enqueue(
                    conn, ItemKind.THUMBNAIL, media_id, Priority.THUMBNAIL, thumb.size
                )
        for frame in media.for_event(conn, verdict.event_id):
            if frame.state is not MediaState.STORED or not frame.path or not verdict.blank:
                continue
            if policy in _DESTROYS:
                media.mark_evicted(
                    conn, frame.media_id, f"blank event: blank_media_policy={policy}"
                )
                outbox.drop_unsent(conn, ItemKind.MEDIA, frame.media_id)
                removed.append(data_dir / frame.path)
            elif not keep_all:
                outbox.reprioritise(conn, ItemKind.MEDIA, frame.media_id, _LAST[policy])
        if drop_thumbnails:
            removed += [data_dir / thumb.path for thumb in verdict.thumbnails.values()]
        events.mark_classified(conn, verdict.event_id, verdict.blank_score)
    return removed
