"""Retention: keep the card from filling, evicting the least valuable files first.

Limits: ``storage.media_quota_bytes`` (bytes of media and thumbnails kept; 0 = none) and
``storage.min_free_bytes`` (free space left on the file system). When either is exceeded,
files go in this order, oldest first within each step:

1. media already uploaded (full-resolution files, then thumbnails, that ingest acknowledged:
   ``uploaded_at`` / ``thumb_uploaded_at`` on the media row);
2. thumbnails of blank events;
3. full-resolution media of low-confidence events (blank, unknown, or a top probability below
   ``storage.evict_below_confidence``) that were not uploaded.

Metadata rows are never evicted, nor media of confident animal events. An evicted file keeps
its row (``state='evicted'`` and the reason; a thumbnail loses its path) and an unsent upload
for it is marked dead with the same reason. If nothing evictable is left and the limit still
holds, the trap reports ``disk_full`` and keeps capturing (the store spools to RAM on ENOSPC).

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
from device.store.media import Media
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

    def over_limit(self) -> bool:
        if self.quota and self.media_bytes > self.quota:
            return True
        free = self.free_bytes()
        return free is not None and free < self.min_free

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
                batch = self._candidates(db, sql, thumbnail, name)
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
            params = {"stored": MediaState.STORED, "threshold": self.threshold, "batch": BATCH}
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


def _record_eviction(conn: sqlite3.Connection, ev: Eviction) -> None:
    if ev.thumbnail:
        media.forget_thumbnail(conn, ev.media_id)
    else:
        media.mark_evicted(conn, ev.media_id, ev.reason)
    # An upload that can no longer happen stays visible, with the reason, for a human.
    kind = ItemKind.THUMBNAIL if ev.thumbnail else ItemKind.MEDIA
    outbox.kill_unsent(conn, kind, ev.media_id, ev.reason)
