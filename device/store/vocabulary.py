"""The store's words: the states and kinds its rows hold, spelled in this module only.

Every other module (in the store and outside it) uses these enums, never the bare strings, so
a state cannot be misspelt in a query and a reader finds every use of one with a search. The
schema's migrations (``schema``) spell the values too: they are history, frozen as shipped.

An outbox item moves ``pending -> inflight -> done`` (or ``dead``, kept for a human). An item
that is not ready yet waits in a ``waiting_*`` state until its ``next_attempt_at`` passes;
then it is claimed again like a pending one. Waiting items are still queued: depth, bytes and
every "what is left" report count them.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class OutboxState(StrEnum):
    PENDING = "pending"
    INFLIGHT = "inflight"
    DONE = "done"
    DEAD = "dead"
    # Metadata whose event the vision worker has not classified yet.
    WAITING_CLASSIFICATION = "waiting_classification"
    # A thumbnail or frame whose event's metadata ingest has not acknowledged yet.
    WAITING_METADATA = "waiting_metadata"


# Not sent yet, whatever the reason: what "queued" means in every report.
QUEUED_STATES: tuple[OutboxState, ...] = (
    OutboxState.PENDING,
    OutboxState.INFLIGHT,
    OutboxState.WAITING_CLASSIFICATION,
    OutboxState.WAITING_METADATA,
)
# What a claim may take once it is due.
CLAIMABLE_STATES: tuple[OutboxState, ...] = (
    OutboxState.PENDING,
    OutboxState.WAITING_CLASSIFICATION,
    OutboxState.WAITING_METADATA,
)


class ItemKind(StrEnum):
    """What an outbox item carries; its id is ``<prefix>:<ref id>`` (see ``item_id_for``)."""

    METADATA = "metadata"  # ref: an event id
    THUMBNAIL = "thumbnail"  # ref: a media id
    MEDIA = "media"  # ref: a media id (the full-resolution file)

    @property
    def prefix(self) -> str:
        return _PREFIX[self]


_PREFIX = {ItemKind.METADATA: "meta", ItemKind.THUMBNAIL: "thumb", ItemKind.MEDIA: "media"}


def item_id_for(kind: ItemKind | str, ref_id: str) -> str:
    """The stable id of an outbox item (the id ingest deduplicates by): made here only."""
    return f"{ItemKind(kind).prefix}:{ref_id}"


class Priority(IntEnum):
    """Upload classes; lower is sent first."""

    METADATA = 0
    THUMBNAIL = 1
    MEDIA = 2  # full-resolution frames of non-blank events
    BLANK_MEDIA = 3  # full-resolution frames of blank events (policy ``keep``)
    # Full-resolution frames of blank events held in doubt (policy ``defer``): sent after
    # everything else, never on a metered link, and the first unsent frames retention evicts.
    DEFERRED_BLANK = 4


# The same classes by name, as reports (queue depth) and older callers use them.
PRIORITY: dict[str, int] = {p.name.lower(): int(p) for p in Priority}


class EventState(StrEnum):
    OPEN = "open"  # frames still arriving
    CLOSED = "closed"  # burst over, not classified yet
    CLASSIFIED = "classified"


class MediaState(StrEnum):
    STORED = "stored"
    FAILED = "failed"  # not a valid JPEG; bytes (if any) kept under failed/
    MISSING = "missing"  # its file vanished while the agent was not running
    EVICTED = "evicted"  # removed by retention or the blank-media policy; the row stays


class BlankMediaPolicy(StrEnum):
    """``vision.blank_media_policy``: what happens to the frames of a blank event.

    Only ``defer`` (the default) survives a wrong verdict whole: the blank filter misses
    animals (backlit, small, night), and ``thumbnail`` and ``delete`` destroy the frames such an
    animal is in the moment the verdict is recorded."""

    DEFER = "defer"  # kept whole, sent last and never on a metered link, evicted first
    KEEP = "keep"  # kept, uploaded last like any media (the metered policy applies)
    THUMBNAIL = "thumbnail"  # reduced to its thumbnail
    DELETE = "delete"  # frames and thumbnails removed; the metadata row stays


class ImportState(StrEnum):
    """An import's run: ``running`` until it ends ``done``, or stops early and resumes later
    (a card pulled out: ``interrupted``; the trap's disk full: ``disk_full``)."""

    RUNNING = "running"
    DONE = "done"
    INTERRUPTED = "interrupted"
    DISK_FULL = "disk_full"


class FailureKind(StrEnum):
    """Why a file on a card was not imported (``import_failures.kind``)."""

    CORRUPT = "corrupt"  # a truncated or damaged JPEG
    NO_TIME = "no_time"  # no EXIF time: never given a guessed one
    NOT_IMAGE = "not_image"  # a video, a text file: left on the card
    UNREADABLE = "unreadable"  # the card failed while it was read
