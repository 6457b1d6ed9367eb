"""One import: a card's photos into the store, as events the trap classifies and sends.

The order is what makes it safe to pull the card, kill the process or fill the disk at any
moment:

1. **Read** every file once, in name order: its sha256, its EXIF and maker data. A photo the
   store already holds (same sha256: a card inserted twice, an import run again) is counted
   and left; a new one is **copied** into the store byte for byte at a name made from its
   sha256 (``MediaStore.write_imported``). Nothing is ever written to the card.
2. **Group** the photos into events (``events.group_events``), on corrected times.
3. **Commit** whole events, a batch per transaction, each closed and queued like a burst.

A copy whose row never came (the card was pulled, the process killed) is found again by the
next run at the same name. When the card goes away or the disk fills, the events read so far
are committed, except the one the last photo read belongs to (it may go on past where the
reading stopped): the next run imports it whole. A photo that cannot be imported (damaged,
no EXIF time) is recorded with its reason, and kept under ``failed/`` if it may hold an animal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timezone, tzinfo
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from device.config import Settings
from device.contracts.hashing import sha256_hex
from device.importer.clock import (
    NO_CORRECTION,
    ClockArgumentError,
    ClockCorrection,
    ReferenceArgument,
    parse_offset,
    parse_reference,
    reference_correction,
)
from device.importer.events import CameraKey, Candidate, PlannedEvent, group_events
from device.importer.photo import PhotoFacts, PhotoProblem, read_photo
from device.importer.scan import Listing, SourceFile, is_gone, list_source
from device.store.db import DatabaseError
from device.store.imports import (
    ImportedEvent,
    ImportedPhoto,
    ImportFailure,
    ImportProgress,
    NewImport,
)
from device.store.media import StoredFile
from device.store.store import CommitResult
from device.store.vocabulary import FailureKind, ImportState

log = logging.getLogger("camtrap.import")

# Ids made from content: the same photo is the same media id on every run of one trap. The
# trap's id is part of it: ingest binds an id to the device that first sent it, so a card
# imported on a second trap must not reuse the first trap's ids (it would be refused).
MEDIA_NAMESPACE = uuid.UUID("6f1d3c55-2b7e-4f0e-9a51-0c7d2d1e8a10")


def media_id_for(device_id: str, sha256: str) -> str:
    return str(uuid.uuid5(MEDIA_NAMESPACE, f"{device_id}:{sha256}"))


PROGRESS_EVERY = 200  # files between progress rows while reading (camtrap import watches them)


class ImportStore(Protocol):
    """What an import needs of the store (``MediaStore`` is it)."""

    data_dir: Path

    def known_photos(self, sha256s: Sequence[str]) -> dict[str, str]: ...

    def begin_import(self, new: NewImport) -> None: ...

    def write_imported(self, media_id: str, data: bytes, sha256: str) -> StoredFile: ...

    def keep_failed_import(self, import_id: str, source_path: str, data: bytes) -> str: ...

    def kept_failure(self, sha256: str) -> str | None: ...

    def discard_uncommitted(self, written: Sequence[StoredFile]) -> int: ...

    def commit_import(
        self,
        import_id: str,
        deployment_id: str,
        batch: Sequence[ImportedEvent],
        failures: Sequence[ImportFailure],
        progress: ImportProgress,
        at: str,
    ) -> CommitResult: ...

    def import_progress(self, import_id: str, progress: ImportProgress, at: str) -> None: ...

    def finish_import(
        self,
        import_id: str,
        state: ImportState,
        message: str | None,
        progress: ImportProgress,
        at: str,
    ) -> None: ...


class ImportRefused(ValueError):
    """An import that cannot start (bad arguments, an unreadable source): one line."""


@dataclass(frozen=True)
class ImportRequest:
    source: Path
    deployment_id: str
    camera: str | None = None
    clock_offset: str | None = None  # --clock-offset as given
    reference: str | None = None  # --reference PHOTO=TIME as given
    requested_by: str = "command"
    import_id: str | None = None  # given when the agent runs a request made by the command


@dataclass
class ImportOutcome:
    import_id: str | None  # None: a dry run
    state: ImportState | None
    message: str | None
    files_total: int
    skipped: int  # hidden and system files left out
    progress: ImportProgress
    clock: ClockCorrection
    events: list[PlannedEvent] = field(default_factory=list)  # what was (or would be) stored
    failures: list[ImportFailure] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)  # source paths already in the store
    closed_events: list[str] = field(default_factory=list)


ProgressCallback = Callable[[ImportProgress, int], None]


@dataclass
class _Reading:
    """What the read pass gathered."""

    candidates: list[Candidate] = field(default_factory=list)
    stored: dict[str, StoredFile] = field(default_factory=dict)  # sha256 -> the copy
    failures: list[ImportFailure] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    stop: ImportState | None = None
    stop_message: str | None = None
    last_read: str | None = None  # sha256 of the last photo read before a stop


class Importer:
    """``store`` None: a dry run that reads but writes nothing (``known`` says what the store
    holds already)."""

    def __init__(
        self,
        settings: Settings,
        store: ImportStore | None,
        *,
        known: Callable[[Sequence[str]], dict[str, str]] | None = None,
        free_bytes: Callable[[], int | None] | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_progress: ProgressCallback | None = None,
        on_committed: Callable[[CommitResult], None] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self.settings = settings
        self.should_stop = should_stop
        self.store = store
        self.known = known or (store.known_photos if store is not None else (lambda _s: {}))
        self.free_bytes = free_bytes
        self.now = now
        self.on_progress = on_progress
        self.on_committed = on_committed
        self.zone: tzinfo = ZoneInfo(settings.device.timezone)

    # -- the whole run ----------------------------------------------------------------------

    def run(self, request: ImportRequest, *, dry_run: bool = False) -> ImportOutcome:
        root = request.source
        try:
            device = os.stat(root).st_dev
            listing = list_source(root)
        except OSError as exc:
            raise ImportRefused(f"{root}: cannot read it ({exc.strerror or exc})") from exc
        reference = self._reference_argument(request)
        clock = self._clock(request, reference, root)
        import_id = None if dry_run else (request.import_id or str(uuid.uuid4()))
        progress = ImportProgress()
        outcome = ImportOutcome(
            import_id, None, None, len(listing.files), listing.skipped, progress, clock
        )
        if import_id is not None:
            assert self.store is not None
            self.store.begin_import(
                NewImport(
                    import_id=import_id,
                    source=str(root),
                    label=root.resolve().name or str(root),
                    deployment_id=request.deployment_id,
                    camera=request.camera,
                    clock_offset_s=clock.offset_s,
                    clock_method=clock.method,
                    clock_reference=clock.reference,
                    requested_by=request.requested_by,
                    started_at=self._stamp(),
                    files_total=len(listing.files),
                )
            )
        try:
            return self._run_begun(request, listing, root, device, clock, import_id, outcome)
        except BaseException as exc:
            # Whatever stopped it (a bug, the store failing), the import must not stay
            # 'running' while the agent lives on: a watching command would wait forever.
            if import_id is not None and self.store is not None:
                with contextlib.suppress(Exception):
                    self.store.finish_import(
                        import_id,
                        ImportState.INTERRUPTED,
                        f"stopped by an error ({type(exc).__name__}: {exc}); import again to"
                        " resume",
                        progress,
                        self._stamp(),
                    )
            raise

    def _run_begun(
        self,
        request: ImportRequest,
        listing: Listing,
        root: Path,
        device: int,
        clock: ClockCorrection,
        import_id: str | None,
        outcome: ImportOutcome,
    ) -> ImportOutcome:
        progress = outcome.progress
        reading = self._read_all(listing.files, root, device, clock, import_id, progress)
        outcome.failures, outcome.duplicates = reading.failures, reading.duplicates
        planned = group_events(
            reading.candidates,
            gap_s=self.settings.import_.sequence_gap_s,
            max_event_s=self.settings.import_.max_event_s,
            max_frames=self.settings.import_.max_event_frames,
        )
        if reading.stop is not None and reading.last_read is not None:
            planned = self._hold_back_boundary(planned, reading)
        outcome.events = planned
        if import_id is None:
            progress.events = len(planned)
            return outcome
        self._commit(import_id, request, planned, reading, progress, outcome)
        state = reading.stop or ImportState.DONE
        message = reading.stop_message or _summary(progress)
        assert self.store is not None
        self.store.finish_import(import_id, state, message, progress, self._stamp())
        outcome.state, outcome.message = state, message
        log.info("import %s: %s", import_id, message)
        return outcome

    # -- 1. read ----------------------------------------------------------------------------

    def _read_all(
        self,
        files: list[SourceFile],
        root: Path,
        device: int,
        clock: ClockCorrection,
        import_id: str | None,
        progress: ImportProgress,
    ) -> _Reading:
        reading = _Reading()
        seen: set[str] = set()
        for index, source in enumerate(files):
            if self.should_stop():
                reading.stop = ImportState.INTERRUPTED
                reading.stop_message = (
                    f"the agent stopped after {index} of {len(files)} files; import again to resume"
                )
                return reading
            try:
                data = source.path.read_bytes()
            except OSError as exc:
                if is_gone(exc, root, device):
                    reading.stop = ImportState.INTERRUPTED
                    reading.stop_message = (
                        f"{root}: the card went away after {index} of {len(files)} files"
                        f" ({exc.strerror or exc}); insert it and import again to resume"
                    )
                    return reading
                self._fail(
                    reading, progress, source.rel, FailureKind.UNREADABLE, _os_reason(exc), None
                )
                progress.files_done += 1
                continue
            sha = sha256_hex(data)
            if sha in seen or self.known([sha]):
                reading.duplicates.append(source.rel)
                progress.duplicates += 1
            else:
                seen.add(sha)
                stopped = self._take(reading, progress, source, data, sha, clock, import_id)
                if stopped:
                    return reading
            progress.files_done += 1
            self._tell(progress, len(files), import_id)
        return reading

    def _take(
        self,
        reading: _Reading,
        progress: ImportProgress,
        source: SourceFile,
        data: bytes,
        sha: str,
        clock: ClockCorrection,
        import_id: str | None,
    ) -> bool:
        """One new file: a candidate photo (copied into the store) or a failure. True when the
        import must stop (the disk is full)."""
        try:
            facts = read_photo(data)
        except PhotoProblem as problem:
            kind = FailureKind(problem.kind)
            keep = data if kind is not FailureKind.NOT_IMAGE else None
            return self._fail(
                reading, progress, source.rel, kind, str(problem), sha, keep, import_id
            )
        media_id = media_id_for(self.settings.device.id, sha)
        candidate = self._candidate(source, sha, facts, clock)
        if import_id is not None:
            assert self.store is not None
            if self._disk_short(len(data)):
                return self._disk_full(reading, progress, "free space is below the reserve")
            try:
                reading.stored[sha] = self.store.write_imported(media_id, data, sha)
            except OSError as exc:
                if _is_full(exc):
                    return self._disk_full(reading, progress, exc.strerror or str(exc))
                raise
        reading.candidates.append(candidate)
        reading.last_read = sha
        progress.imported += 1
        return False

    def _fail(
        self,
        reading: _Reading,
        progress: ImportProgress,
        rel: str,
        kind: FailureKind,
        reason: str,
        sha: str | None,
        keep: bytes | None = None,
        import_id: str | None = None,
    ) -> bool:
        kept = None
        if keep and sha is not None and self.store is not None:
            # Kept once: a card imported again does not copy its damaged photos again.
            kept = self.store.kept_failure(sha)
        if keep and kept is None and import_id is not None and self.store is not None:
            if self._disk_short(len(keep)):
                return self._disk_full(reading, progress, "free space is below the reserve")
            try:
                kept = self.store.keep_failed_import(import_id, rel, keep)
            except OSError as exc:
                if _is_full(exc):
                    return self._disk_full(reading, progress, exc.strerror or str(exc))
                raise
        reading.failures.append(ImportFailure(rel, kind, reason, sha, kept))
        if kind is FailureKind.NOT_IMAGE:
            progress.not_images += 1
        else:
            progress.failed += 1
        log.info("import: %s not imported: %s", rel, reason)
        return False

    def _disk_full(self, reading: _Reading, progress: ImportProgress, why: str) -> bool:
        reserve = self.settings.storage.min_free_bytes
        reading.stop = ImportState.DISK_FULL
        reading.stop_message = (
            f"the trap's disk is full ({why}; storage.min_free_bytes = {reserve}) after"
            f" {progress.files_done} files; free space, or let uploads and retention make room,"
            " and import again to resume"
        )
        return True

    def _disk_short(self, size: int) -> bool:
        free = self.free_bytes() if self.free_bytes is not None else None
        return free is not None and free - size < self.settings.storage.min_free_bytes

    def _candidate(
        self, source: SourceFile, sha: str, facts: PhotoFacts, clock: ClockCorrection
    ) -> Candidate:
        camera_time, assumed = self._camera_time(facts)
        exif: dict[str, Any] = dict(facts.exif)
        if assumed:
            exif["camtrapTimeZone"] = {"zone": self.settings.device.timezone, "assumed": True}
        note = clock.exif_note()
        if note is not None:
            exif["camtrapClockCorrection"] = note
        maker = facts.maker
        return Candidate(
            rel=source.rel,
            sha256=sha,
            size=source.size,
            taken_at=camera_time + clock.offset,
            camera=CameraKey(facts.make, facts.model, facts.serial),
            sequence=maker.sequence if maker is not None else None,
            event_number=maker.event_number if maker is not None else None,
            capture_method=maker.capture_method if maker is not None else None,
            width=facts.width,
            height=facts.height,
            exif=exif,
        )

    def _camera_time(self, facts: PhotoFacts) -> tuple[datetime, bool]:
        """The photo's time as the camera's clock said it, aware: with the offset the camera
        recorded, else in the deployment's zone (an assumption, recorded as one)."""
        if facts.offset is not None:
            return facts.taken_at.replace(tzinfo=timezone(facts.offset)), False
        return facts.taken_at.replace(tzinfo=self.zone), True

    def _tell(self, progress: ImportProgress, total: int, import_id: str | None) -> None:
        if self.on_progress is not None:
            self.on_progress(progress, total)
        if import_id is not None and progress.files_done % PROGRESS_EVERY == 0:
            assert self.store is not None
            self.store.import_progress(import_id, progress, self._stamp())

    # -- the clock ----------------------------------------------------------------------------

    def _reference_argument(self, request: ImportRequest) -> ReferenceArgument | None:
        if request.clock_offset is not None and request.reference is not None:
            raise ImportRefused("give --clock-offset or --reference, not both")
        try:
            return None if request.reference is None else parse_reference(request.reference)
        except ClockArgumentError as exc:
            raise ImportRefused(str(exc)) from exc

    def _clock(
        self, request: ImportRequest, reference: ReferenceArgument | None, root: Path
    ) -> ClockCorrection:
        try:
            if request.clock_offset is not None:
                return parse_offset(request.clock_offset)
            if reference is None:
                return NO_CORRECTION
            photo = _find_reference(root, reference.photo)
            try:
                facts = read_photo(photo.read_bytes())
            except PhotoProblem as problem:
                raise ImportRefused(
                    f"--reference {reference.given}: {photo}: {problem}; pick another photo"
                ) from problem
            except OSError as exc:
                raise ImportRefused(
                    f"--reference {reference.given}: {photo}: cannot read it ({exc.strerror})"
                ) from exc
            camera_time, _ = self._camera_time(facts)
            return reference_correction(reference, camera_time, self.zone)
        except ClockArgumentError as exc:
            raise ImportRefused(str(exc)) from exc

    # -- 2 and 3: events, committed -------------------------------------------------------------

    def _hold_back_boundary(
        self, planned: list[PlannedEvent], reading: _Reading
    ) -> list[PlannedEvent]:
        """Without the event the last photo read belongs to: it may go on past the stop."""
        kept: list[PlannedEvent] = []
        for event in planned:
            if any(p.sha256 == reading.last_read for p in event.photos):
                if self.store is not None:
                    held = [
                        reading.stored[p.sha256] for p in event.photos if p.sha256 in reading.stored
                    ]
                    try:
                        self.store.discard_uncommitted(held)
                    except OSError as exc:
                        log.warning("import: could not remove uncommitted copies: %s", exc)
                continue
            kept.append(event)
        return kept

    def _commit(
        self,
        import_id: str,
        request: ImportRequest,
        planned: list[PlannedEvent],
        reading: _Reading,
        progress: ImportProgress,
        outcome: ImportOutcome,
    ) -> None:
        # The totals count what is committed: copies held back (or lost to a full disk) are
        # not imported yet.
        progress.imported = 0
        batch: list[ImportedEvent] = []
        failures = list(reading.failures)
        limit = self.settings.import_.batch_photos
        for event in planned:
            batch.append(self._imported_event(event, request, reading.stored))
            if sum(len(e.photos) for e in batch) >= limit:
                if not self._commit_batch(import_id, request, batch, failures, reading, outcome):
                    return
                batch, failures = [], []
        if batch or failures:
            self._commit_batch(import_id, request, batch, failures, reading, outcome)

    def _commit_batch(
        self,
        import_id: str,
        request: ImportRequest,
        batch: list[ImportedEvent],
        failures: list[ImportFailure],
        reading: _Reading,
        outcome: ImportOutcome,
    ) -> bool:
        """One transaction; False when the disk is too full for it (the import stops, its
        copies are found again by the next run)."""
        assert self.store is not None
        progress = outcome.progress
        photos = sum(len(e.photos) for e in batch)
        progress.imported += photos
        progress.events += len(batch)
        try:
            result = self.store.commit_import(
                import_id, request.deployment_id, batch, failures, progress, self._stamp()
            )
        except (OSError, DatabaseError) as exc:
            if not _is_full(exc):
                raise
            progress.imported -= photos
            progress.events -= len(batch)
            self._disk_full(reading, progress, str(exc))
            return False
        outcome.closed_events += result.closed_events
        if self.on_committed is not None:
            self.on_committed(result)
        return True

    def _imported_event(
        self, event: PlannedEvent, request: ImportRequest, stored: dict[str, StoredFile]
    ) -> ImportedEvent:
        first = event.photos[0]
        event_id = str(
            uuid.uuid5(
                MEDIA_NAMESPACE,
                f"event:{self.settings.device.id}:{request.deployment_id}:{first.sha256}",
            )
        )
        clock_source = _clock_source(first.exif)
        return ImportedEvent(
            event_id=event_id,
            capture_method=event.capture_method,
            trigger_source=event.trigger_source,
            clock_source=clock_source,
            clock_synced=clock_source == "trailcam+reference",
            camera=event.camera.as_dict(request.camera),
            photos=tuple(
                ImportedPhoto(
                    media_id=media_id_for(self.settings.device.id, p.sha256),
                    seq=seq,
                    file=stored[p.sha256],
                    source_path=p.rel,
                    file_name=_file_name(p.rel),
                    taken_at=p.taken_at,
                    width=p.width,
                    height=p.height,
                    exif_data=p.exif,
                )
                for seq, p in enumerate(event.photos)
            ),
        )

    def _stamp(self) -> str:
        return self.now().astimezone(UTC).isoformat(timespec="seconds")


def _clock_source(exif: dict[str, Any]) -> str:
    note = exif.get("camtrapClockCorrection")
    return f"trailcam+{note['method']}" if isinstance(note, dict) else "trailcam"


def _find_reference(root: Path, photo: str) -> Path:
    """The reference photo: a path (absolute, or relative to the source), or a file name found
    once on the card."""
    given = Path(photo)
    for candidate in (given, root / given):
        if candidate.is_file():
            return candidate
    matches = [f.path for f in list_source(root).files if Path(f.rel).name.lower() == photo.lower()]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ImportRefused(
            f"--reference {photo}: {len(matches)} photos have that name; give its path on the card"
        )
    raise ImportRefused(f"--reference {photo}: no such photo in {root}")


def _file_name(rel: str) -> str:
    return rel.rsplit("/", 1)[-1][:255]


def _is_full(exc: OSError | DatabaseError) -> bool:
    """ENOSPC from a file, SQLITE_FULL from the database."""
    import errno

    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return getattr(exc, "sqlite_errorname", "") == "SQLITE_FULL" or "is full" in str(exc)


def _os_reason(exc: OSError) -> str:
    return f"cannot read it ({exc.strerror or exc})"


def _summary(progress: ImportProgress) -> str:
    parts = [
        f"{progress.imported} photos imported in {progress.events} events",
        f"{progress.duplicates} already held",
    ]
    if progress.failed:
        parts.append(f"{progress.failed} not imported")
    if progress.not_images:
        parts.append(f"not photos: {progress.not_images}")
    return ", ".join(parts)


__all__ = [
    "ImportOutcome",
    "ImportRefused",
    "ImportRequest",
    "ImportStore",
    "Importer",
]
