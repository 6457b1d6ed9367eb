"""Retention: keep the card from filling, evicting the least valuable files first.

Limits: ``storage.media_quota_bytes`` (bytes of media and thumbnails kept; 0 = none) and
``storage.min_free_bytes`` (free space left on the file system). Nothing is evicted while both
hold; when either is exceeded, files go in this order, each step only while a limit still
needs room:

1. media already uploaded: full-resolution files, then thumbnails, that ingest acknowledged
   (``uploaded_at`` / ``thumb_uploaded_at`` on the media row), oldest first. They go before
   anything the cloud lacks because deleting them loses nothing: the cloud holds the bytes;
2. deferred blanks (``vision.blank_media_policy = "defer"``): full-resolution frames of events
   judged blank, not yet in the cloud, **most confidently blank first** (the event's
   ``blank_score``, highest first; ties oldest first). They are the frames least likely to
   hold an animal, so they are the first unsent frames to go; until a limit needs the room
   they stay whole, because the filter misses animals;
3. thumbnails of blank events, oldest first (once a deferred frame went, its thumbnail is the
   last picture of the event, and the one a metered link may still carry: so after step 2);
4. full-resolution media of low-confidence events (blank, unknown, or a top probability below
   ``storage.evict_below_confidence``) that were not uploaded, oldest first: blanks kept by
   ``keep``, and events the classifier is unsure of.

Metadata rows are never evicted, nor media of confident animal events, nor frames of events
not classified yet. An evicted file keeps its row (``state='evicted'`` and the reason, e.g.
``retention: deferred blank``; a thumbnail loses its path) and an unsent upload for it is
marked dead with the same reason. If nothing evictable is left and the limit still holds, the
trap reports ``disk_full`` and keeps capturing (the store spools to RAM on ENOSPC).

The byte total is kept running (added per commit, re-read from SQL now and then to catch
thumbnails and deletions made by the vision worker), so a check costs a statvfs, not a walk.

Retention also keeps the outbox from growing forever: at most once an hour (on a commit, or
when the agent starts) done rows older than ``storage.outbox_done_retention_days`` are pruned
(``Outbox.prune_done``). Captures are what make rows, so pruning on the commit path bounds the
table.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from device.config import Settings
from device.store import media, outbox
from device.store.db import Database
from device.store.media import DEFERRED_BLANK_PARAMS, DEFERRED_BLANK_WHERE, Media
from device.store.outbox import Outbox
from device.store.vocabulary import ItemKind, MediaState

log = logging.getLogger("camtrap.retention")

BATCH = 50
RESYNC_EVERY_S = 60.0
PRUNE_EVERY_S = 3600.0
DAY_S = 86_400.0


@dataclass
class Eviction:
    media_id: str
    path: str
    size: int
    thumbnail: bool
    reason: str


@dataclass
class RetentionReport:
    evicted: list[Eviction] = field(default_factory=list)
    over: bool = False  # still over a limit after evicting all it may

    @property
    def freed(self) -> int:
        return sum(e.size for e in self.evicted)


_STEPS: list[tuple[str, bool, str]] = [
    (
        "uploaded media",
        False,
        "SELECT m.media_id, m.path, COALESCE(m.size, 0) FROM media m"
        " WHERE m.state = :stored AND m.path IS NOT NULL AND m.uploaded_at IS NOT NULL"
        " ORDER BY m.captured_at LIMIT :batch",
    ),
    (
        "uploaded thumbnail",
        True,
        "SELECT m.media_id, m.thumb_path, COALESCE(m.thumb_size, 0) FROM media m"
        " WHERE m.thumb_path IS NOT NULL AND m.thumb_uploaded_at IS NOT NULL"
        " ORDER BY m.captured_at LIMIT :batch",
    ),
    (
        "deferred blank",
        False,
        "SELECT m.media_id, m.path, COALESCE(m.size, 0) FROM media m"
        " JOIN events e ON e.event_id = m.event_id"
        f" WHERE {DEFERRED_BLANK_WHERE}"
        " ORDER BY e.blank_score IS NULL, e.blank_score DESC, m.captured_at LIMIT :batch",
    ),
    (
        "blank thumbnail",
        True,
        "SELECT m.media_id, m.thumb_path, COALESCE(m.thumb_size, 0) FROM media m"
        " JOIN observations ob ON ob.event_id = m.event_id AND ob.media_id IS NULL"
        " WHERE m.thumb_path IS NOT NULL AND ob.observation_type = 'blank'"
        " ORDER BY m.captured_at LIMIT :batch",
    ),
    (
        "low-confidence media",
        False,
        "SELECT m.media_id, m.path, COALESCE(m.size, 0) FROM media m"
        " JOIN observations ob ON ob.event_id = m.event_id AND ob.media_id IS NULL"
        " WHERE m.state = :stored AND m.path IS NOT NULL"
        " AND (ob.observation_type IN ('blank', 'unknown')"
        "      OR COALESCE(ob.classification_probability, 1) < :threshold)"
        " ORDER BY m.captured_at LIMIT :batch",
    ),
]


class Retention:
    def __init__(
        self,
        settings: Settings,
        db: Callable[[], Database | None],
        on_disk_full: Callable[[bool, str], None] | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.data_dir = settings.storage.data_dir
        self.quota = settings.storage.media_quota_bytes
        self.min_free = settings.storage.min_free_bytes
        self.threshold = settings.storage.evict_below_confidence
        self.done_retention_s = settings.storage.outbox_done_retention_days * DAY_S
        self.db = db
        self.on_disk_full = on_disk_full
        self.monotonic = monotonic
        self.wall_clock = wall_clock
        self.media_bytes = 0
        self.disk_full = False
        self._resynced_at = 0.0
        self._pruned_at: float | None = None

    # -- accounting ------------------------------------------------------------------------

    def resync(self) -> int:
        db = self.db()
        if db is None:
            return self.media_bytes
        self.media_bytes = Media(db).kept_bytes()
        self._resynced_at = self.monotonic()
        return self.media_bytes

    def committed(self, media_ids: list[str]) -> None:
        """Frames just stored: add their sizes (primary-key lookups, not a scan)."""
        db = self.db()
        if db is None or not media_ids:
            return
        self.media_bytes += Media(db).stored_bytes_of(media_ids)

    def free_bytes(self) -> int | None:
        try:
            st = os.statvfs(self.data_dir)
        except OSError:
            return None
        return st.f_bavail * st.f_frsize

    def room_needed(self) -> int:
        """Bytes to free before both limits hold again (0: nothing is to be evicted)."""
        need = self.media_bytes - self.quota if self.quota else 0
        free = self.free_bytes()
        if free is not None:
            need = max(need, self.min_free - free)
        return max(0, need)

    def over_limit(self) -> bool:
        return self.room_needed() > 0

    # -- enforcing -------------------------------------------------------------------------

    def after_commit(self, media_ids: list[str]) -> RetentionReport:
        if self.monotonic() - self._resynced_at > RESYNC_EVERY_S:
            self.resync()
        else:
            self.committed(media_ids)
        return self.enforce()

    def prune_outbox(self) -> int:
        """Done outbox rows past ``storage.outbox_done_retention_days`` go; returns how many."""
        db = self.db()
        if db is None:
            return 0
        self._pruned_at = self.monotonic()
        pruned = Outbox(db, clock=self.wall_clock).prune_done(self.done_retention_s)
        if pruned:
            log.info("pruned %d outbox rows acknowledged long ago", pruned)
        return pruned

    def enforce(self) -> RetentionReport:
        report = RetentionReport()
        db = self.db()
        if db is None:
            return report
        if self._pruned_at is None or self.monotonic() - self._pruned_at >= PRUNE_EVERY_S:
            self.prune_outbox()
        for name, thumbnail, sql in _STEPS:
            while self.over_limit():
                batch = _enough(self._candidates(db, sql, thumbnail, name), self.room_needed())
                if not batch:
                    break
                self._evict(db, batch)
                report.evicted += batch
            if not self.over_limit():
                break
        report.over = self.over_limit()
        if report.evicted:
            log.warning(
                "retention evicted %d files (%d bytes); media now %d bytes",
                len(report.evicted),
                report.freed,
                self.media_bytes,
            )
        self._set_disk_full(report.over)
        return report

    def _candidates(self, db: Database, sql: str, thumbnail: bool, name: str) -> list[Eviction]:
        with db.read() as conn:
            params = {
                **DEFERRED_BLANK_PARAMS,
                "stored": MediaState.STORED,
                "threshold": self.threshold,
                "batch": BATCH,
            }
            rows = conn.execute(sql, params).fetchall()
        return [Eviction(r[0], r[1], int(r[2]), thumbnail, f"retention: {name}") for r in rows]

    def _evict(self, db: Database, batch: list[Eviction]) -> None:
        """Rows first (so no row points at a deleted file), files after the commit."""
        with db.write() as conn:
            for ev in batch:
                _record_eviction(conn, ev)
        for ev in batch:
            try:
                (self.data_dir / ev.path).unlink(missing_ok=True)
            except OSError as exc:
                log.error("could not delete %s: %s", ev.path, exc)
            self.media_bytes -= ev.size

    def _set_disk_full(self, full: bool) -> None:
        if full == self.disk_full:
            return
        self.disk_full = full
        free = self.free_bytes()
        message = (
            f"storage limit reached with nothing left to evict: media {self.media_bytes} bytes"
            f" (quota {self.quota or 'none'}), free {free} bytes (reserve {self.min_free})"
            if full
            else "storage back within limits"
        )
        (log.error if full else log.warning)(message)
        if self.on_disk_full is not None:
            self.on_disk_full(full, message)


def _enough(candidates: list[Eviction], need: int) -> list[Eviction]:
    """The leading candidates that free ``need`` bytes (all of them if they cannot): a file
    is evicted only because the limit needs its room, never because it shared a batch."""
    taken, freed = [], 0
    for ev in candidates:
        if freed >= need:
            break
        taken.append(ev)
        freed += ev.size
    return taken


def _record_eviction(conn: sqlite3.Connection, ev: Eviction) -> None:
    if ev.thumbnail:
        media.forget_thumbnail(conn, ev.media_id)
    else:
        media.mark_evicted(conn, ev.media_id, ev.reason)
    # An upload that can no longer happen stays visible, with the reason, for a human.
    kind = ItemKind.THUMBNAIL if ev.thumbnail else ItemKind.MEDIA
    outbox.kill_unsent(conn, kind, ev.media_id, ev.reason)
