"""The ``media`` table: one row per frame, with its file, its thumbnail and their uploads.

``Media`` is the door other rooms read through; the functions below it run inside the store's
own transactions (commit, reconcile, recording a verdict, retention).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from device.contracts.protocol import CaptureMethod, TriggerSource
from device.store.db import Source
from device.store.vocabulary import ItemKind, MediaState, OutboxState, Priority

_COLUMNS = (
    "media_id, event_id, seq, captured_at, path, file_mediatype, sha256, size, width, height,"
    " capture_method, trigger_source, clock_source, clock_synced, ir_on, lores_mean, state,"
    " error, recovered, thumb_path, thumb_sha256, thumb_size, uploaded_at, thumb_uploaded_at"
)

# A frame held as a deferred blank (``vision.blank_media_policy = "defer"``): its event was
# judged blank, the file is still here, and the cloud does not have it; its upload sits in the
# deferred class (dead or not: the frame is held all the same). Named parameters: the
# ``DEFERRED_BLANK_PARAMS`` below. Retention's first unsent step and the reports use it.
DEFERRED_BLANK_WHERE = (
    "m.state = :stored AND m.path IS NOT NULL AND m.uploaded_at IS NULL"
    " AND EXISTS (SELECT 1 FROM outbox o WHERE o.kind = :media_kind AND o.ref_id = m.media_id"
    " AND o.priority = :deferred AND o.state != :done)"
)
DEFERRED_BLANK_PARAMS: dict[str, str | int] = {
    "stored": MediaState.STORED,
    "media_kind": ItemKind.MEDIA,
    "deferred": Priority.DEFERRED_BLANK,
    "done": OutboxState.DONE,
}


@dataclass(frozen=True)
class HeldFrames:
    """How many frames a report counts, and their bytes on the card."""

    frames: int
    bytes: int


@dataclass(frozen=True)
class MediaRow:
    media_id: str
    event_id: str
    seq: int  # frame number within the burst
    captured_at: datetime
    path: str | None  # relative to the data dir
    file_mediatype: str
    sha256: str | None
    size: int | None
    width: int | None
    height: int | None
    capture_method: CaptureMethod
    trigger_source: TriggerSource
    clock_source: str
    clock_synced: bool
    ir_on: bool
    lores_mean: float | None
    state: MediaState
    error: str | None
    recovered: bool
    thumb_path: str | None
    thumb_sha256: str | None
    thumb_size: int | None
    uploaded_at: float | None  # unix time ingest acknowledged the full file
    thumb_uploaded_at: float | None  # ... and the thumbnail


@dataclass(frozen=True)
class MediaUpload:
    """A frame and what of it reached ingest, for comparing the trap with the cloud."""

    media_id: str
    event_id: str
    state: MediaState
    sha256: str | None
    thumb_sha256: str | None
    uploaded: bool
    thumbnail_uploaded: bool
    upload_queued: bool  # an upload of the full file was (or is) owed


@dataclass(frozen=True)
class StoredFile:
    """A file the store wrote under the data dir (a thumbnail, say)."""

    path: str  # relative to the data dir
    sha256: str
    size: int


class Media:
    def __init__(self, source: Source) -> None:
        self.source = source

    def get(self, media_id: str) -> MediaRow | None:
        return self.get_many([media_id]).get(media_id)

    def get_many(self, media_ids: list[str]) -> dict[str, MediaRow]:
        out: dict[str, MediaRow] = {}
        with self.source.read() as conn:
            for start in range(0, len(media_ids), 500):
                part = media_ids[start : start + 500]
                marks = ",".join("?" * len(part))
                rows = conn.execute(
                    f"SELECT {_COLUMNS} FROM media WHERE media_id IN ({marks})", part
                ).fetchall()
                out.update({r["media_id"]: _media(r) for r in rows})
        return out

    def for_event(self, event_id: str) -> list[MediaRow]:
        with self.source.read() as conn:
            return for_event(conn, event_id)

    def latest(self) -> MediaRow | None:
        """The most recent capture."""
        with self.source.read() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM media ORDER BY captured_at DESC LIMIT 1"
            ).fetchone()
        return None if row is None else _media(row)

    def count(self) -> int:
        with self.source.read() as conn:
            return count(conn)

    def count_by_state(self) -> dict[MediaState, int]:
        with self.source.read() as conn:
            rows = conn.execute("SELECT state, COUNT(*) FROM media GROUP BY state").fetchall()
        return {MediaState(state): int(n) for state, n in rows}

    def unsynchronised_count(self) -> int:
        """Frames taken while nothing vouched for the clock."""
        with self.source.read() as conn:
            return int(
                conn.execute("SELECT COUNT(*) FROM media WHERE clock_synced = 0").fetchone()[0]
            )

    def kept_bytes(self) -> int:
        """Bytes of stored frames and of the thumbnails kept."""
        with self.source.read() as conn:
            full, thumbs = conn.execute(
                "SELECT COALESCE(SUM(CASE WHEN state = ? THEN size END), 0),"
                " COALESCE(SUM(CASE WHEN thumb_path IS NOT NULL THEN thumb_size END), 0)"
                " FROM media",
                (MediaState.STORED,),
            ).fetchone()
        return int(full) + int(thumbs)

    def deferred_blanks(self) -> HeldFrames:
        """Full-resolution frames held as deferred blanks (see ``DEFERRED_BLANK_WHERE``)."""
        with self.source.read() as conn:
            frames, size = conn.execute(
                f"SELECT COUNT(*), COALESCE(SUM(m.size), 0) FROM media m"
                f" WHERE {DEFERRED_BLANK_WHERE}",
                DEFERRED_BLANK_PARAMS,
            ).fetchone()
        return HeldFrames(int(frames), int(size))

    def stored_bytes_of(self, media_ids: list[str]) -> int:
        """Bytes of those frames that are stored (primary-key lookups, not a scan)."""
        if not media_ids:
            return 0
        with self.source.read() as conn:
            marks = ",".join("?" * len(media_ids))
            return int(
                conn.execute(
                    f"SELECT COALESCE(SUM(size), 0) FROM media WHERE media_id IN ({marks})"
                    " AND state = ?",
                    (*media_ids, MediaState.STORED),
                ).fetchone()[0]
            )

    def uploads(self) -> list[MediaUpload]:
        """Every frame and what of it ingest acknowledged, in capture order."""
        with self.source.read() as conn:
            rows = conn.execute(
                "SELECT m.media_id, m.event_id, m.state, m.sha256, m.thumb_sha256,"
                " m.uploaded_at, m.thumb_uploaded_at,"
                " m.uploaded_at IS NOT NULL OR EXISTS (SELECT 1 FROM outbox o"
                "   WHERE o.kind = ? AND o.ref_id = m.media_id)"
                " FROM media m ORDER BY m.captured_at, m.seq",
                (ItemKind.MEDIA,),
            ).fetchall()
        return [
            MediaUpload(
                media_id=r[0],
                event_id=r[1],
                state=MediaState(r[2]),
                sha256=r[3],
                thumb_sha256=r[4],
                uploaded=r[5] is not None,
                thumbnail_uploaded=r[6] is not None,
                upload_queued=bool(r[7]),
            )
            for r in rows
        ]


# -- inside the store's own transactions ---------------------------------------------------------


def for_event(conn: sqlite3.Connection, event_id: str) -> list[MediaRow]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM media WHERE event_id = ? ORDER BY seq", (event_id,)
    ).fetchall()
    return [_media(r) for r in rows]


def insert_if_new(
    conn: sqlite3.Connection,
    record: dict[str, Any],
    file: StoredFile | None,
    state: MediaState,
    error: str | None,
    *,
    recovered: bool,
) -> bool:
    """The frame's row; False when it was already there (a re-run import, say)."""
    return bool(
        conn.execute(
            "INSERT OR IGNORE INTO media (media_id, event_id, seq, captured_at, path, sha256,"
            " size, width, height, capture_method, trigger_source, clock_source, clock_synced,"
            " ir_on, lores_mean, state, error, recovered)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                record["media_id"],
                record["event_id"],
                record["seq"],
                record["captured_at"],
                None if file is None else file.path,
                None if file is None else file.sha256,
                0 if file is None else file.size,
                record.get("width"),
                record.get("height"),
                record["capture_method"],
                record["trigger_source"],
                record["clock_source"],
                int(bool(record["clock_synced"])),
                int(bool(record.get("ir_on"))),
                record.get("lores_mean"),
                state,
                error,
                int(recovered),
            ),
        ).rowcount
    )


def count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM media").fetchone()[0])


def ids_paths_states(conn: sqlite3.Connection) -> list[tuple[str, str | None, MediaState]]:
    rows = conn.execute("SELECT media_id, path, state FROM media").fetchall()
    return [(r[0], r[1], MediaState(r[2])) for r in rows]


def mark_missing(conn: sqlite3.Connection, media_id: str, error: str) -> None:
    conn.execute(
        "UPDATE media SET state = ?, error = ? WHERE media_id = ?",
        (MediaState.MISSING, error, media_id),
    )


def mark_evicted(conn: sqlite3.Connection, media_id: str, reason: str) -> None:
    """The full-resolution file goes (retention or the blank policy); the row stays."""
    conn.execute(
        "UPDATE media SET state = ?, error = ? WHERE media_id = ?",
        (MediaState.EVICTED, reason, media_id),
    )


def set_thumbnail(conn: sqlite3.Connection, media_id: str, thumb: StoredFile) -> None:
    conn.execute(
        "UPDATE media SET thumb_path = ?, thumb_sha256 = ?, thumb_size = ? WHERE media_id = ?",
        (thumb.path, thumb.sha256, thumb.size, media_id),
    )


def forget_thumbnail(conn: sqlite3.Connection, media_id: str) -> None:
    conn.execute("UPDATE media SET thumb_path = NULL WHERE media_id = ?", (media_id,))


def _media(row: sqlite3.Row) -> MediaRow:
    return MediaRow(
        media_id=row["media_id"],
        event_id=row["event_id"],
        seq=row["seq"],
        captured_at=datetime.fromisoformat(row["captured_at"]),
        path=row["path"],
        file_mediatype=row["file_mediatype"],
        sha256=row["sha256"],
        size=row["size"],
        width=row["width"],
        height=row["height"],
        capture_method=row["capture_method"],
        trigger_source=row["trigger_source"],
        clock_source=row["clock_source"],
        clock_synced=bool(row["clock_synced"]),
        ir_on=bool(row["ir_on"]),
        lores_mean=row["lores_mean"],
        state=MediaState(row["state"]),
        error=row["error"],
        recovered=bool(row["recovered"]),
        thumb_path=row["thumb_path"],
        thumb_sha256=row["thumb_sha256"],
        thumb_size=row["thumb_size"],
        uploaded_at=row["uploaded_at"],
        thumb_uploaded_at=row["thumb_uploaded_at"],
    )
