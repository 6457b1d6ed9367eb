"""The ``events`` table: one row per burst (or timelapse shot), made on the device.

``Events`` is the door other rooms read through; the functions below it run inside the store's
own transactions (commit, reconcile, recording a verdict).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from device.contracts.protocol import CaptureMethod, TriggerSource
from device.store.db import Source
from device.store.vocabulary import EventState

_COLUMNS = (
    "event_id, deployment_id, capture_method, trigger_source, started_at, ended_at,"
    " frame_count, clock_source, clock_synced, state, blank_score, uploaded_at, import_id"
)


@dataclass(frozen=True)
class EventRow:
    event_id: str
    deployment_id: str
    capture_method: CaptureMethod
    trigger_source: TriggerSource
    started_at: datetime
    ended_at: datetime | None
    frame_count: int
    clock_source: str
    clock_synced: bool
    state: EventState
    blank_score: float | None
    uploaded_at: float | None  # unix time ingest acknowledged its metadata; None: not yet
    import_id: str | None = None  # imported from a trail camera's card (not the trap's own)


@dataclass(frozen=True)
class EventUpload:
    event_id: str
    uploaded_at: float | None


class Events:
    def __init__(self, source: Source) -> None:
        self.source = source

    def get(self, event_id: str) -> EventRow | None:
        with self.source.read() as conn:
            return get(conn, event_id)

    def awaiting_classification(self) -> list[str]:
        """Closed, never classified (e.g. before a crash), oldest first."""
        with self.source.read() as conn:
            rows = conn.execute(
                "SELECT event_id FROM events WHERE state = ? ORDER BY created_seq",
                (EventState.CLOSED,),
            ).fetchall()
        return [r[0] for r in rows]

    def count(self) -> int:
        with self.source.read() as conn:
            return count(conn)

    def count_by_state(self) -> dict[EventState, int]:
        with self.source.read() as conn:
            rows = conn.execute("SELECT state, COUNT(*) FROM events GROUP BY state").fetchall()
        return {EventState(state): int(n) for state, n in rows}

    def count_by_capture_method(self) -> dict[str, int]:
        with self.source.read() as conn:
            rows = conn.execute(
                "SELECT capture_method, COUNT(*) FROM events GROUP BY capture_method"
            ).fetchall()
        return {method: int(n) for method, n in rows}

    def uploads(self) -> list[EventUpload]:
        """Every event and whether ingest acknowledged its metadata, oldest first."""
        with self.source.read() as conn:
            rows = conn.execute(
                "SELECT event_id, uploaded_at FROM events ORDER BY created_seq"
            ).fetchall()
        return [EventUpload(event_id, uploaded_at) for event_id, uploaded_at in rows]


# -- inside the store's own transactions ---------------------------------------------------------


def get(conn: sqlite3.Connection, event_id: str) -> EventRow | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM events WHERE event_id = ?", (event_id,)).fetchone()
    return None if row is None else _event(row)


def insert_if_new(conn: sqlite3.Connection, record: dict[str, Any]) -> None:
    """The event a frame record belongs to, made by its first frame; idempotent by id."""
    conn.execute(
        "INSERT OR IGNORE INTO events (event_id, deployment_id, capture_method, trigger_source,"
        " started_at, clock_source, clock_synced, state, created_seq)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?,"
        " (SELECT COALESCE(MAX(created_seq), 0) + 1 FROM events))",
        (
            record["event_id"],
            record.get("deployment_id", ""),
            record["capture_method"],
            record["trigger_source"],
            record["captured_at"],
            record["clock_source"],
            int(bool(record["clock_synced"])),
            EventState.OPEN,
        ),
    )


def count_frame(conn: sqlite3.Connection, event_id: str) -> None:
    conn.execute("UPDATE events SET frame_count = frame_count + 1 WHERE event_id = ?", (event_id,))


def close(conn: sqlite3.Connection, event_id: str, ended_at: str) -> None:
    """An open event's burst is over; a closed or classified one is left as it is."""
    conn.execute(
        "UPDATE events SET ended_at = ?, state = ? WHERE event_id = ? AND state = ?",
        (ended_at, EventState.CLOSED, event_id, EventState.OPEN),
    )


def close_spooled(conn: sqlite3.Connection, event_id: str, ended_at: str, frames: int) -> None:
    """A close recorded in the RAM spool: its end and frame count, whatever came first."""
    conn.execute(
        "UPDATE events SET ended_at = ?, frame_count = MAX(frame_count, ?),"
        " state = CASE WHEN state = ? THEN ? ELSE state END WHERE event_id = ?",
        (ended_at, frames, EventState.OPEN, EventState.CLOSED, event_id),
    )


def metadata_uploaded(conn: sqlite3.Connection, event_id: str) -> bool:
    row = conn.execute("SELECT uploaded_at FROM events WHERE event_id = ?", (event_id,)).fetchone()
    return row is not None and row[0] is not None


def left_open(conn: sqlite3.Connection) -> list[tuple[str, CaptureMethod, str]]:
    """(event id, capture method, time of its last frame) of every open event."""
    rows = conn.execute(
        "SELECT e.event_id, e.capture_method, COALESCE(MAX(m.captured_at), e.started_at)"
        " FROM events e LEFT JOIN media m ON m.event_id = e.event_id"
        " WHERE e.state = ? GROUP BY e.event_id",
        (EventState.OPEN,),
    ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def mark_classified(conn: sqlite3.Connection, event_id: str, blank_score: float | None) -> None:
    conn.execute(
        "UPDATE events SET state = ?, blank_score = ? WHERE event_id = ?",
        (EventState.CLASSIFIED, blank_score, event_id),
    )


def count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])


def _event(row: sqlite3.Row) -> EventRow:
    return EventRow(
        event_id=row["event_id"],
        deployment_id=row["deployment_id"],
        capture_method=row["capture_method"],
        trigger_source=row["trigger_source"],
        started_at=datetime.fromisoformat(row["started_at"]),
        ended_at=datetime.fromisoformat(row["ended_at"]) if row["ended_at"] else None,
        frame_count=row["frame_count"],
        clock_source=row["clock_source"],
        clock_synced=bool(row["clock_synced"]),
        state=EventState(row["state"]),
        blank_score=row["blank_score"],
        uploaded_at=row["uploaded_at"],
        import_id=row["import_id"],
    )
