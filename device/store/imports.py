"""Trail-camera imports: the ``imports`` and ``import_failures`` tables, and the door types.

The importer (``device/importer``) hands the store whole events of photos read from a card
(``ImportedEvent``) and the files it could not import (``ImportFailure``); the store writes the
files and rows (``MediaStore.commit_import``) and keeps each import's progress in its row, so
``camtrap import`` can watch an import the agent runs, and ``camtrap status`` can count them.

An imported photo is stored byte for byte as it was on the card; its media id is made from its
sha256, so the same photo imported twice is the same row (``known_photos``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

from device.contracts.protocol import CaptureMethod, TriggerSource
from device.store.db import Source
from device.store.media import StoredFile
from device.store.vocabulary import FailureKind, ImportState

IMPORTED_DIR = "imported"
_SHA_BATCH = 500


@dataclass(frozen=True)
class ImportedPhoto:
    """One photo of a card, ready to store: its bytes exactly as read."""

    media_id: str
    seq: int
    file: StoredFile  # already written under imported/ (``MediaStore.write_imported``)
    source_path: str  # relative to the import's source, as the card names it
    file_name: str
    taken_at: datetime  # aware, clock correction applied
    width: int | None
    height: int | None
    exif_data: dict[str, Any]


@dataclass(frozen=True)
class ImportedEvent:
    event_id: str
    capture_method: CaptureMethod
    trigger_source: TriggerSource
    clock_source: str
    clock_synced: bool
    camera: dict[str, str | None]
    photos: tuple[ImportedPhoto, ...]


@dataclass(frozen=True)
class ImportFailure:
    source_path: str
    kind: FailureKind
    reason: str
    sha256: str | None = None
    # A photo that may hold an animal (damaged, no time) is kept under failed/ all the same.
    kept_path: str | None = None


@dataclass(frozen=True)
class NewImport:
    import_id: str
    source: str
    label: str
    deployment_id: str
    camera: str | None
    clock_offset_s: float
    clock_method: str | None
    clock_reference: str | None
    requested_by: str
    started_at: str
    files_total: int


@dataclass
class ImportProgress:
    """The running totals an import keeps in its row."""

    files_done: int = 0
    imported: int = 0
    duplicates: int = 0
    failed: int = 0
    not_images: int = 0
    events: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class ImportRecord:
    import_id: str
    source: str
    label: str
    deployment_id: str
    camera: str | None
    clock_offset_s: float
    clock_method: str | None
    clock_reference: str | None
    requested_by: str
    started_at: str
    updated_at: str
    finished_at: str | None
    state: ImportState
    message: str | None
    files_total: int
    progress: ImportProgress = field(default_factory=ImportProgress)

    def as_dict(self) -> dict[str, Any]:
        """Flat: the import's fields, then its totals."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "progress"}
        return {**out, "state": self.state.value, **self.progress.as_dict()}


@dataclass(frozen=True)
class FailureRow:
    import_id: str
    source_path: str
    kind: FailureKind
    reason: str
    kept_path: str | None


class Imports:
    """The read door: what was imported, for ``camtrap import`` and ``camtrap status``."""

    def __init__(self, source: Source) -> None:
        self.source = source

    def get(self, import_id: str) -> ImportRecord | None:
        with self.source.read() as conn:
            row = conn.execute("SELECT * FROM imports WHERE import_id = ?", (import_id,)).fetchone()
        return None if row is None else _record(row)

    def latest(self, limit: int = 5) -> list[ImportRecord]:
        with self.source.read() as conn:
            rows = conn.execute(
                "SELECT * FROM imports ORDER BY started_at DESC, rowid DESC LIMIT ?", (limit,)
            ).fetchall()
        return [_record(r) for r in rows]

    def failures(self, import_id: str) -> list[FailureRow]:
        with self.source.read() as conn:
            rows = conn.execute(
                "SELECT import_id, source_path, kind, reason, kept_path FROM import_failures"
                " WHERE import_id = ? ORDER BY source_path",
                (import_id,),
            ).fetchall()
        return [FailureRow(r[0], r[1], FailureKind(r[2]), r[3], r[4]) for r in rows]

    def known_photos(self, sha256s: Iterable[str]) -> dict[str, str]:
        """sha256 -> media id, for the photos of ``sha256s`` the store already holds (imported
        or captured, whatever their state: an evicted photo was stored once, and is not
        stored again)."""
        with self.source.read() as conn:
            return known_photos(conn, sha256s)

    def kept_failure(self, sha256: str) -> str | None:
        with self.source.read() as conn:
            row = conn.execute(
                "SELECT kept_path FROM import_failures WHERE sha256 = ? AND kept_path IS NOT NULL"
                " LIMIT 1",
                (sha256,),
            ).fetchone()
        return None if row is None else str(row[0])

    def event_facts(self, event_id: str) -> dict[str, Any] | None:
        """The camera and import of an imported event, for the uplink; None for a capture."""
        with self.source.read() as conn:
            return import_facts(conn, event_id)

    def media_facts(self, media_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """media id -> its name on the card and its EXIF, for the imported ones."""
        with self.source.read() as conn:
            return media_facts(conn, media_ids)

    def summary(self) -> dict[str, Any]:
        """The counts ``camtrap status`` shows."""
        with self.source.read() as conn:
            imports = int(conn.execute("SELECT COUNT(*) FROM imports").fetchone()[0])
            events = int(
                conn.execute("SELECT COUNT(*) FROM events WHERE import_id IS NOT NULL").fetchone()[
                    0
                ]
            )
            media = int(
                conn.execute("SELECT COUNT(*) FROM media WHERE import_id IS NOT NULL").fetchone()[0]
            )
            failed = int(conn.execute("SELECT COUNT(*) FROM import_failures").fetchone()[0])
            running = int(
                conn.execute(
                    "SELECT COUNT(*) FROM imports WHERE state = ?", (ImportState.RUNNING,)
                ).fetchone()[0]
            )
        last = self.latest(1)
        return {
            "imports": imports,
            "running": running,
            "events": events,
            "media": media,
            "failed_files": failed,
            "last": last[0].as_dict() if last else None,
        }


# -- inside the store's own transactions ---------------------------------------------------------


def known_photos(conn: sqlite3.Connection, sha256s: Iterable[str]) -> dict[str, str]:
    wanted = list(dict.fromkeys(sha256s))
    found: dict[str, str] = {}
    for start in range(0, len(wanted), _SHA_BATCH):
        part = wanted[start : start + _SHA_BATCH]
        marks = ",".join("?" * len(part))
        rows = conn.execute(
            f"SELECT sha256, media_id FROM media WHERE sha256 IN ({marks})", part
        ).fetchall()
        found.update({r[0]: r[1] for r in rows})
    return found


def begin(conn: sqlite3.Connection, new: NewImport) -> None:
    conn.execute(
        "INSERT INTO imports (import_id, source, label, deployment_id, camera, clock_offset_s,"
        " clock_method, clock_reference, requested_by, started_at, updated_at, state,"
        " files_total) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            new.import_id,
            new.source,
            new.label,
            new.deployment_id,
            new.camera,
            new.clock_offset_s,
            new.clock_method,
            new.clock_reference,
            new.requested_by,
            new.started_at,
            new.started_at,
            ImportState.RUNNING,
            new.files_total,
        ),
    )


def record_progress(
    conn: sqlite3.Connection, import_id: str, progress: ImportProgress, at: str
) -> None:
    conn.execute(
        "UPDATE imports SET files_done = ?, imported = ?, duplicates = ?, failed = ?,"
        " not_images = ?, events = ?, updated_at = ? WHERE import_id = ?",
        (
            progress.files_done,
            progress.imported,
            progress.duplicates,
            progress.failed,
            progress.not_images,
            progress.events,
            at,
            import_id,
        ),
    )


def finish(
    conn: sqlite3.Connection, import_id: str, state: ImportState, message: str | None, at: str
) -> None:
    conn.execute(
        "UPDATE imports SET state = ?, message = ?, finished_at = ?, updated_at = ?"
        " WHERE import_id = ?",
        (state, message, at, at, import_id),
    )


def abandon_running(conn: sqlite3.Connection, at: str) -> int:
    """Imports left ``running`` by a process that died: interrupted (a re-run resumes)."""
    return conn.execute(
        "UPDATE imports SET state = ?, message = ?, finished_at = ?, updated_at = ?"
        " WHERE state = ?",
        (
            ImportState.INTERRUPTED,
            "the importing process stopped before the end; run the import again to resume",
            at,
            at,
            ImportState.RUNNING,
        ),
    ).rowcount


def record_failure(conn: sqlite3.Connection, import_id: str, failure: ImportFailure) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO import_failures (import_id, source_path, kind, reason, sha256,"
        " kept_path) VALUES (?,?,?,?,?,?)",
        (
            import_id,
            failure.source_path,
            failure.kind,
            failure.reason[:500],
            failure.sha256,
            failure.kept_path,
        ),
    )


def tag_event(
    conn: sqlite3.Connection, event_id: str, import_id: str, camera: dict[str, str | None]
) -> None:
    conn.execute(
        "UPDATE events SET import_id = ?, camera = ? WHERE event_id = ?",
        (import_id, json.dumps(camera, sort_keys=True), event_id),
    )


def tag_media(
    conn: sqlite3.Connection, media_id: str, import_id: str, photo: ImportedPhoto
) -> None:
    conn.execute(
        "UPDATE media SET import_id = ?, file_name = ?, exif_data = ? WHERE media_id = ?",
        (import_id, photo.file_name, json.dumps(photo.exif_data, sort_keys=True), media_id),
    )


def import_facts(conn: sqlite3.Connection, event_id: str) -> dict[str, Any] | None:
    """What the uplink sends of an imported event: its camera and import; None for a capture."""
    row = conn.execute(
        "SELECT e.camera, i.import_id, i.label, i.clock_offset_s FROM events e"
        " JOIN imports i ON i.import_id = e.import_id WHERE e.event_id = ?",
        (event_id,),
    ).fetchone()
    if row is None:
        return None
    return {
        "camera": json.loads(row[0]) if row[0] else None,
        "import_id": row[1],
        "source": row[2],
        "clock_offset_s": float(row[3]),
    }


def media_facts(conn: sqlite3.Connection, media_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """media id -> its card name and EXIF, for imported photos among ``media_ids``."""
    out: dict[str, dict[str, Any]] = {}
    ids = list(media_ids)
    for start in range(0, len(ids), _SHA_BATCH):
        part = ids[start : start + _SHA_BATCH]
        marks = ",".join("?" * len(part))
        rows = conn.execute(
            f"SELECT media_id, file_name, exif_data FROM media WHERE media_id IN ({marks})"
            " AND import_id IS NOT NULL",
            part,
        ).fetchall()
        for r in rows:
            out[r[0]] = {
                "file_name": r[1],
                "exif_data": json.loads(r[2]) if r[2] else None,
            }
    return out


def _record(row: sqlite3.Row) -> ImportRecord:
    return ImportRecord(
        import_id=row["import_id"],
        source=row["source"],
        label=row["label"],
        deployment_id=row["deployment_id"],
        camera=row["camera"],
        clock_offset_s=float(row["clock_offset_s"]),
        clock_method=row["clock_method"],
        clock_reference=row["clock_reference"],
        requested_by=row["requested_by"],
        started_at=row["started_at"],
        updated_at=row["updated_at"],
        finished_at=row["finished_at"],
        state=ImportState(row["state"]),
        message=row["message"],
        files_total=int(row["files_total"]),
        progress=ImportProgress(
            files_done=int(row["files_done"]),
            imported=int(row["imported"]),
            duplicates=int(row["duplicates"]),
            failed=int(row["failed"]),
            not_images=int(row["not_images"]),
            events=int(row["events"]),
        ),
    )
