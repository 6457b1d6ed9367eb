"""The durable store: JPEG files first, then SQLite rows, with a RAM fallback.

Order of a commit batch: every frame's file is written atomically (see ``files``), then one
transaction records events, media and their outbox entries. A crash between the two leaves a
file without a row, which ``reconcile`` re-registers on the next start from the file's own EXIF.

When the data dir is unwritable or gone, frames go to a spool in ``fallback_dir`` (RAM on a
Pi) as JPEG + JSON pairs, and the store probes the data dir until it is back, then imports
the spool. Nothing is dropped silently: what cannot be kept is recorded with the reason.

``MediaStore`` is also the vision worker's door: the closed events waiting for a verdict,
their thumbnails, and ``record_verdict`` (see ``verdicts``). The SQL lives in the table
modules (``events``, ``media``, ``observations``, ``outbox``, ``kv``).
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from device import __version__
from device.capture.types import CapturedFrame, EventClosed
from device.config import Settings
from device.contracts import durable
from device.store import events, files, imports, kv, media, outbox, recovery, thumbs, verdicts
from device.store.db import Database
from device.store.exif import CaptureTags, build_exif, read_record, with_exif
from device.store.health import RECOVERY_KEY
from device.store.imports import (
    ImportedEvent,
    ImportFailure,
    ImportProgress,
    Imports,
    NewImport,
)
from device.store.media import MediaRow, StoredFile
from device.store.outbox import Outbox
from device.store.verdicts import EventToClassify, Verdict
from device.store.vocabulary import ImportState, ItemKind, MediaState, Priority

log = logging.getLogger("camtrap.store")

DB_NAME = "camtrap.db"
FAILED_DIR = "failed"
SPOOL_DIR = "spool"


@dataclass
class CommitResult:
    committed_media: list[str] = field(default_factory=list)
    failed_media: list[str] = field(default_factory=list)
    closed_events: list[str] = field(default_factory=list)
    spooled: int = 0


@dataclass
class _Prepared:
    """A frame after its file was written: everything its row needs."""

    item: CapturedFrame
    file: StoredFile | None
    state: MediaState
    error: str | None


class MediaStore:
    def __init__(
        self, settings: Settings, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        """``monotonic`` paces the probes of an unusable data dir."""
        self.settings = settings
        self.monotonic = monotonic
        self.data_dir = settings.storage.data_dir
        self.spool_dir = settings.storage.fallback_dir / SPOOL_DIR
        self.db: Database | None = None
        self._spool_seq = 0
        self._next_probe = 0.0
        self._opened = False
        self.last_error: str | None = None
        # The last database recovery of this process (see ``recovery``), and who to tell.
        self.recovery: dict[str, Any] | None = None
        self.recovery_listeners: list[Callable[[dict[str, Any]], None]] = []
        self._unsynced_imports = False  # imported files written, not yet synced to the disk

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        return "primary" if self.db is not None else "fallback"

    def open(self) -> None:
        """Open the data dir if possible; otherwise start in fallback mode."""
        try:
            self._open_primary()
        except (OSError, sqlite3.Error) as exc:
            self._enter_fallback(f"data dir {self.data_dir} unusable at start: {exc}")

    def _open_primary(self) -> None:
        if not self.data_dir.is_dir():
            raise files.DataDirUnavailable(f"data dir {self.data_dir} is missing")
        probe = self.data_dir / ".write-probe"
        probe.write_bytes(b"")
        probe.unlink()
        db_path = self.data_dir / DB_NAME
        # A damaged database is moved aside and rebuilt from the JPEGs, never a reason to
        # spool to RAM (see ``recovery``).
        problem = recovery.damage(db_path)
        aside = self._move_aside(db_path, problem) if problem else None
        try:
            found = self._open_and_reconcile(db_path)
        except sqlite3.DatabaseError as exc:
            if aside is not None or not recovery.is_damage(exc, db_path):
                raise
            problem = f"{type(exc).__name__}: {exc}"
            aside = self._move_aside(db_path, problem)
            found = self._open_and_reconcile(db_path)
        if aside is not None and problem is not None:
            self._record_recovery(aside, problem, found)
        self._opened = True
        self._import_spool()
        if self.last_error:
            log.warning("data dir %s is writable again; back to normal storage", self.data_dir)
        self.last_error = None

    def _open_and_reconcile(self, db_path: Path) -> dict[str, int]:
        if self.db is not None:
            self.db.close()
        self.db = None
        db = Database(db_path)
        try:
            # At start-up nothing is capturing yet, so any open event was cut off by a crash.
            found = reconcile(db, self.data_dir, self.settings, close_open_events=not self._opened)
        except BaseException:
            db.close()
            raise
        self.db = db
        return found

    def _move_aside(self, db_path: Path, problem: str) -> Path:
        log.error("database %s is damaged (%s); moving it aside and rebuilding", db_path, problem)
        try:
            return recovery.move_aside(db_path)
        except OSError as exc:
            raise OSError(
                f"database {db_path} is damaged ({problem}) and cannot be moved aside: {exc}"
            ) from exc

    def _record_recovery(self, aside: Path, problem: str, found: dict[str, int]) -> None:
        assert self.db is not None
        with self.db.write() as conn:
            record = {
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
                "aside": aside.name,
                "reason": problem[:500],
                "rebuilt_media": found.get("recovered_files", 0),
                "rebuilt_events": events.count(conn),
                "outbox_pending": outbox.queued_count(conn),
            }
            kv.bump_counter(conn, RECOVERY_KEY)
            kv.put(conn, RECOVERY_KEY, json.dumps(record, sort_keys=True))
        self.recovery = record
        log.error(
            "database rebuilt from the media files: %d captures re-registered and queued for"
            " upload; the damaged file is kept as %s",
            record["rebuilt_media"],
            aside,
        )
        for listener in list(self.recovery_listeners):
            try:
                listener(record)
            except Exception:
                log.exception("recovery listener failed")

    def _enter_fallback(self, reason: str) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None
        self.last_error = reason
        self._next_probe = self.monotonic() + self.settings.storage.probe_interval_s
        log.error(
            "storage fallback: %s; captures go to %s until it recovers", reason, self.spool_dir
        )

    def maybe_recover(self) -> None:
        if self.db is not None or self.monotonic() < self._next_probe:
            return
        self._next_probe = self.monotonic() + self.settings.storage.probe_interval_s
        try:
            self._open_primary()
        except (OSError, sqlite3.Error) as exc:
            if self.db is not None:
                self.db.close()
                self.db = None
            log.debug("data dir still unusable: %s", exc)

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None

    # -- commits ---------------------------------------------------------------------------

    def commit(self, items: Sequence[CapturedFrame | EventClosed]) -> CommitResult:
        self.maybe_recover()
        if self.db is not None:
            try:
                return self._commit_primary(items)
            except (OSError, sqlite3.Error) as exc:
                self._enter_fallback(f"write to {self.data_dir} failed: {exc}")
        return self._commit_spool(items)

    def _commit_primary(self, items: Sequence[CapturedFrame | EventClosed]) -> CommitResult:
        assert self.db is not None
        prepared = [self._write_file(it) for it in items if isinstance(it, CapturedFrame)]
        if not self.db.still_in_place():
            raise files.DataDirUnavailable(f"database {self.db.path} vanished or was replaced")
        result = CommitResult()
        with self.db.write() as conn:
            for p in prepared:
                insert_frame(
                    conn, p.item, p.file, p.state, p.error, self.settings.device.deployment_id
                )
                stored = p.state is MediaState.STORED
                (result.committed_media if stored else result.failed_media).append(p.item.media_id)
            for it in items:
                if isinstance(it, EventClosed):
                    close_event(conn, it)
                    result.closed_events.append(it.event_id)
        return result

    def _write_file(self, item: CapturedFrame) -> _Prepared:
        data = item.frame.jpeg
        problem = item.frame.error or files.jpeg_problem(data)
        if problem is None:
            try:
                data = with_exif(data, build_exif(self._tags(item)))
            except (ValueError, IndexError) as exc:
                problem = f"cannot add EXIF: {exc}"
        top = files.MEDIA_DIR if problem is None else FAILED_DIR
        rel = files.media_relpath(item.captured_at, item.media_id, top)
        if problem is not None:
            rel = rel.with_suffix(".bin")
            if not data:
                return _Prepared(item, None, MediaState.FAILED, problem)
        directory = files.ensure_subdir(self.data_dir, *rel.parent.parts)
        files.atomic_write(directory, rel.name, data)
        return _Prepared(
            item,
            StoredFile(str(rel), files.sha256_hex(data), len(data)),
            MediaState.STORED if problem is None else MediaState.FAILED,
            problem,
        )

    def _tags(self, item: CapturedFrame) -> CaptureTags:
        s = self.settings
        return CaptureTags(
            captured_at=item.captured_at,
            media_id=item.media_id,
            device_id=s.device.id,
            make=s.device.make,
            model=s.device.model,
            software=f"camtrap {__version__}",
            record=frame_record(item, s.device.deployment_id),
            latitude=s.location.latitude,
            longitude=s.location.longitude,
        )

    # -- fallback spool --------------------------------------------------------------------

    def _commit_spool(self, items: Sequence[CapturedFrame | EventClosed]) -> CommitResult:
        result = CommitResult()
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        budget = self.settings.storage.fallback_max_bytes - _dir_size(self.spool_dir)
        for it in items:
            self._spool_seq += 1
            stem = f"{time.time_ns():020d}-{self._spool_seq:06d}"
            if isinstance(it, EventClosed):
                record = {
                    "type": "close",
                    "event_id": it.event_id,
                    "ended_at": it.ended_at.isoformat(),
                    "frame_count": it.frame_count,
                }
            else:
                record = {
                    "type": "frame",
                    **frame_record(it, self.settings.device.deployment_id),
                    "media_id": it.media_id,
                    "error": it.frame.error,
                }
                jpeg = it.frame.jpeg
                if len(jpeg) > budget:
                    record["error"] = (
                        f"fallback spool full ({budget} bytes left): image not kept, metadata kept"
                    )
                    log.error("spool full: media %s kept as metadata only", it.media_id)
                elif jpeg:
                    files.atomic_write(self.spool_dir, stem + ".img", jpeg)
                    budget -= len(jpeg)
                    record["image"] = stem + ".img"
            files.atomic_write(self.spool_dir, stem + ".json", json.dumps(record).encode())
            result.spooled += 1
        return result

    def _import_spool(self) -> None:
        if not self.spool_dir.is_dir() or self.db is None:
            return
        entries = sorted(self.spool_dir.glob("*.json"))
        if not entries:
            return
        imported = 0
        for entry in entries:
            record = json.loads(entry.read_bytes())
            if record["type"] == "close":
                with self.db.write() as conn:
                    events.close_spooled(
                        conn, record["event_id"], record["ended_at"], record["frame_count"]
                    )
                    # As for a close committed directly: its metadata is owed to the cloud.
                    queue_metadata(conn, record["event_id"])
            else:
                self._import_spooled_frame(record)
            for sibling in (entry, entry.with_suffix(".img")):
                sibling.unlink(missing_ok=True)
            imported += 1
        files.fsync_dir(self.spool_dir)
        log.warning(
            "imported %d spooled items from %s into %s", imported, self.spool_dir, self.data_dir
        )

    def _import_spooled_frame(self, record: dict[str, Any]) -> None:
        assert self.db is not None
        image = self.spool_dir / record["image"] if record.get("image") else None
        data = image.read_bytes() if image and image.exists() else b""
        captured_at = datetime.fromisoformat(record["captured_at"])
        problem = record.get("error") or files.jpeg_problem(data)
        rel = files.media_relpath(
            captured_at, record["media_id"], files.MEDIA_DIR if problem is None else FAILED_DIR
        )
        stored = None
        if data:
            if problem is not None:
                rel = rel.with_suffix(".bin")
            directory = files.ensure_subdir(self.data_dir, *rel.parent.parts)
            files.atomic_write(directory, rel.name, data)
            stored = StoredFile(str(rel), files.sha256_hex(data), len(data))
        with self.db.write() as conn:
            register_from_record(
                conn,
                record,
                stored,
                MediaState.STORED if problem is None else MediaState.FAILED,
                problem,
                recovered=False,
            )

    def spool_count(self) -> int:
        return len(list(self.spool_dir.glob("*.json"))) if self.spool_dir.is_dir() else 0

    # -- the vision worker's door ----------------------------------------------------------

    def events_awaiting_classification(self) -> list[str]:
        """Closed events never classified (e.g. before a crash), oldest first."""
        return [] if self.db is None else events.Events(self.db).awaiting_classification()

    def event_to_classify(self, event_id: str) -> EventToClassify | None:
        """The event and its frames while it waits for a verdict; None otherwise (or while
        the store runs on its RAM fallback)."""
        return None if self.db is None else verdicts.event_to_classify(self.db, event_id)

    def write_thumbnail(self, frame: MediaRow, data: bytes) -> StoredFile:
        """The thumbnail file of a stored frame; recorded by ``record_verdict``."""
        if not frame.path:
            raise ValueError(f"media {frame.media_id} has no file to make a thumbnail of")
        return thumbs.write_thumbnail(self.data_dir, frame.path, data)

    def record_verdict(self, verdict: Verdict) -> list[Path]:
        """See ``verdicts.record_verdict``; the policy is ``vision.blank_media_policy``."""
        if self.db is None:
            raise files.DataDirUnavailable(
                f"data dir {self.data_dir} is unusable: {self.last_error}"
            )
        return verdicts.record_verdict(
            self.db, self.data_dir, verdict, self.settings.vision.blank_media_policy
        )

    # -- the importer's door (device/importer; docs/trail-cameras.md) ----------------------

    def _primary(self) -> Database:
        if self.db is None:
            raise files.DataDirUnavailable(
                f"data dir {self.data_dir} is unusable: {self.last_error}"
            )
        return self.db

    def known_photos(self, sha256s: Sequence[str]) -> dict[str, str]:
        """sha256 -> media id of the photos already held (so none is stored twice)."""
        return Imports(self._primary()).known_photos(sha256s)

    def begin_import(self, new: NewImport) -> None:
        with self._primary().write() as conn:
            imports.begin(conn, new)

    def write_imported(self, media_id: str, data: bytes, sha256: str) -> StoredFile:
        """A photo from a card, written byte for byte (never re-encoded, no EXIF of ours) at a
        path made from its id, so a re-run after a crash lands on the same name; its row comes
        with ``commit_import``, which first makes every such file durable with one sync of the
        card (10,000 photos are not 20,000 fsyncs). ``sha256`` is the importer's hash of
        ``data`` (it needed it first, to find duplicates)."""
        self._primary()
        rel = Path(imports.IMPORTED_DIR, sha256[:2], f"{media_id}.jpg")
        directory = files.ensure_subdir(self.data_dir, *rel.parent.parts)
        durable.atomic_write(directory / rel.name, data, mode=0o640, sync=False)
        self._unsynced_imports = True
        return StoredFile(str(rel), sha256, len(data))

    def keep_failed_import(self, import_id: str, source_path: str, data: bytes) -> str:
        """A photo that could not be imported, copied under ``failed/import/`` all the same."""
        self._primary()
        name = source_path.replace("/", "__")
        directory = files.ensure_subdir(self.data_dir, FAILED_DIR, "import", import_id)
        files.atomic_write(directory, name, data)
        return str(Path(FAILED_DIR, "import", import_id, name))

    def kept_failure(self, sha256: str) -> str | None:
        """Where an earlier import kept this damaged photo, if one did."""
        return Imports(self._primary()).kept_failure(sha256)

    def discard_uncommitted(self, written: Sequence[StoredFile]) -> int:
        """Remove copies this import wrote but will not commit (the disk is full): a file a
        row refers to is never touched. The originals are still on the card."""
        db = self._primary()
        with db.read() as conn:
            held = set(imports.known_photos(conn, [f.sha256 for f in written]))
        removed = 0
        for stored in written:
            if stored.sha256 in held:
                continue
            (self.data_dir / stored.path).unlink(missing_ok=True)
            removed += 1
        return removed

    def commit_import(
        self,
        import_id: str,
        deployment_id: str,
        batch: Sequence[ImportedEvent],
        failures: Sequence[ImportFailure],
        progress: ImportProgress,
        at: str,
    ) -> CommitResult:
        """Whole events in one transaction: each closed (it is complete), its frames queued,
        like a burst the trap captured; the failures beside them, and the import's totals."""
        db = self._primary()
        if not db.still_in_place():
            raise files.DataDirUnavailable(f"database {db.path} vanished or was replaced")
        if self._unsynced_imports:
            # Files before rows, as for a capture: no row may name a file not yet on disk.
            durable.sync_filesystem(self.data_dir)
            self._unsynced_imports = False
        result = CommitResult()
        with db.write() as conn:
            for event in batch:
                for photo in event.photos:
                    record = {
                        "event_id": event.event_id,
                        "media_id": photo.media_id,
                        "seq": photo.seq,
                        "captured_at": photo.taken_at.isoformat(),
                        "capture_method": event.capture_method,
                        "trigger_source": event.trigger_source,
                        "clock_source": event.clock_source,
                        "clock_synced": event.clock_synced,
                        "ir_on": False,
                        "deployment_id": deployment_id,
                        "width": photo.width,
                        "height": photo.height,
                    }
                    register_from_record(
                        conn, record, photo.file, MediaState.STORED, None, recovered=False
                    )
                    imports.tag_media(conn, photo.media_id, import_id, photo)
                    result.committed_media.append(photo.media_id)
                imports.tag_event(conn, event.event_id, import_id, event.camera)
                last = event.photos[-1].taken_at
                close_event(
                    conn, EventClosed(event.event_id, last, len(event.photos), event.capture_method)
                )
                result.closed_events.append(event.event_id)
            for failure in failures:
                imports.record_failure(conn, import_id, failure)
            imports.record_progress(conn, import_id, progress, at)
        return result

    def import_progress(self, import_id: str, progress: ImportProgress, at: str) -> None:
        with self._primary().write() as conn:
            imports.record_progress(conn, import_id, progress, at)

    def finish_import(
        self,
        import_id: str,
        state: ImportState,
        message: str | None,
        progress: ImportProgress,
        at: str,
    ) -> None:
        with self._primary().write() as conn:
            imports.record_progress(conn, import_id, progress, at)
            imports.finish(conn, import_id, state, message, at)


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def frame_record(item: CapturedFrame, deployment_id: str) -> dict[str, Any]:
    """The per-frame facts, as stored in EXIF UserComment and in spool entries."""
    return {
        "event_id": item.event_id,
        "seq": item.seq,
        "captured_at": item.captured_at.isoformat(),
        "capture_method": item.capture_method,
        "trigger_source": item.trigger_source,
        "clock_source": item.clock.source,
        "clock_synced": item.clock.synced,
        "ir_on": item.ir_on,
        "deployment_id": deployment_id,
        "width": item.frame.width,
        "height": item.frame.height,
        "lores_mean": _lores_mean(item),
    }


def _lores_mean(item: CapturedFrame) -> float | None:
    lores = item.frame.lores
    return None if lores is None else round(float(lores.mean()), 2)


def insert_frame(
    conn: sqlite3.Connection,
    item: CapturedFrame,
    file: StoredFile | None,
    state: MediaState,
    error: str | None,
    deployment_id: str,
) -> None:
    record = frame_record(item, deployment_id)
    record["media_id"] = item.media_id
    register_from_record(conn, record, file, state, error, recovered=False)


def register_from_record(
    conn: sqlite3.Connection,
    record: dict[str, Any],
    file: StoredFile | None,
    state: MediaState,
    error: str | None,
    *,
    recovered: bool,
) -> None:
    """Insert the event (if new), the media row and its outbox entry; idempotent by id."""
    events.insert_if_new(conn, record)
    if not media.insert_if_new(conn, record, file, state, error, recovered=recovered):
        return
    events.count_frame(conn, record["event_id"])
    if state is MediaState.STORED:
        # A test capture (capture-test command) travels at the top priority class.
        test = record["trigger_source"] == verdicts.TEST_TRIGGER
        priority = Priority.METADATA if test else Priority.MEDIA
        Outbox.enqueue(conn, ItemKind.MEDIA, record["media_id"], priority, file.size if file else 0)


def close_event(conn: sqlite3.Connection, closed: EventClosed) -> None:
    events.close(conn, closed.event_id, closed.ended_at.isoformat())
    queue_metadata(conn, closed.event_id)


def queue_metadata(conn: sqlite3.Connection, event_id: str) -> None:
    """The event's metadata item; once acknowledged (its done row maybe pruned since) it is
    never owed again."""
    if not events.metadata_uploaded(conn, event_id):
        Outbox.enqueue(conn, ItemKind.METADATA, event_id, Priority.METADATA)


# -- start-up reconciliation ------------------------------------------------------------------


def reconcile(
    db: Database, data_dir: Path, settings: Settings, *, close_open_events: bool = True
) -> dict[str, int]:
    """Make files and rows agree after whatever happened while we were not running.

    - ``*.part`` files never reached their final name, so no row refers to them: delete,
      loudly, and count;
    - a final-named file without a row (crash between file and commit): re-register it from
      its own EXIF record;
    - a row whose file is gone: flag it ``missing``;
    - an event left open by a crash: close it at its last frame and queue its metadata.
    """
    found = {"parts_deleted": 0, "recovered_files": 0, "missing_files": 0, "events_closed": 0}
    roots = [
        data_dir / files.MEDIA_DIR,
        data_dir / FAILED_DIR,
        data_dir / files.THUMB_DIR,
        data_dir / imports.IMPORTED_DIR,
    ]
    on_disk: dict[str, Path] = {}
    for root in roots:
        if not root.is_dir():
            continue
        for path in root.rglob("*"):
            if path.name.endswith(files.PART_SUFFIX):
                log.warning("deleting unfinished file %s (never committed)", path)
                path.unlink(missing_ok=True)
                found["parts_deleted"] += 1
            elif root.name == files.MEDIA_DIR and path.suffix == ".jpg":
                on_disk[path.stem] = path
    with db.read() as conn:
        rows = media.ids_paths_states(conn)
    known = {media_id for media_id, _, _ in rows}
    for media_id, path in sorted(on_disk.items()):
        if media_id in known:
            continue
        _reregister(db, data_dir, media_id, path, settings)
        found["recovered_files"] += 1
    with db.write() as conn:
        for media_id, rel, state in rows:
            if state is MediaState.STORED and rel and not (data_dir / rel).exists():
                log.warning("media %s: file %s is missing; flagged", media_id, rel)
                media.mark_missing(conn, media_id, "file missing at start-up")
                found["missing_files"] += 1
        if close_open_events:
            # Nothing imports before the store opens: an import still 'running' lost its
            # process. Its copies without rows stay; a re-run lands on the same names.
            imports.abandon_running(conn, datetime.now(UTC).isoformat(timespec="seconds"))
            for event_id, capture_method, ended in events.left_open(conn):
                close_event(
                    conn, EventClosed(event_id, datetime.fromisoformat(ended), 0, capture_method)
                )
                found["events_closed"] += 1
        for name, value in found.items():
            if value:
                kv.bump_counter(conn, name, value)
    if any(found.values()):
        log.warning("reconciled data dir: %s", found)
    return found


def _reregister(
    db: Database, data_dir: Path, media_id: str, path: Path, settings: Settings
) -> None:
    record = read_record(path)
    stored = StoredFile(
        str(path.relative_to(data_dir)), files.sha256_file(path), path.stat().st_size
    )
    if record is None or "event_id" not in record:
        # The file has no self-description (not ours, or damaged): keep it, visibly.
        stamp = datetime.fromtimestamp(path.stat().st_mtime).astimezone()
        record = {
            "event_id": f"recovered-{media_id}",
            "seq": 0,
            "captured_at": stamp.isoformat(),
            "capture_method": "activityDetection",
            "trigger_source": "unknown",
            "clock_source": "file-mtime",
            "clock_synced": False,
            "deployment_id": settings.device.deployment_id,
        }
        error = "re-registered without EXIF record; timestamp is the file's mtime"
    else:
        error = None
    record["media_id"] = media_id
    log.warning("re-registering %s (file without a row)", stored.path)
    with db.write() as conn:
        register_from_record(conn, record, stored, MediaState.STORED, error, recovered=True)


def free_bytes(path: Path) -> int | None:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None
