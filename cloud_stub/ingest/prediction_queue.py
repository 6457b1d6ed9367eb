"""The store's side of cloud prediction: the queue of unclassified media and the answers.

Which media are *unclassified*: those of an event whose CaptureMeta carried no machine
classification, that is no ``observations`` row with ``classification_method = 'machine'``
other than ``observation_type = 'unclassified'`` (a trap with vision switched off sends none;
a trap with no pack serving sends one event-level ``unclassified`` row). The trap's own
observations arrive only with the CaptureMeta, before any file, so the judgement is made once
per event: once one of its media is queued, every other media of that event is queued too
(the endpoint's own answers must not make the event look classified to its later frames).

What is sent: the full file when it is a JPEG, else the thumbnail. A thumbnail queues its
media after ``THUMBNAIL_GRACE_S``, so a full file still being chunked is sent instead; the
full file's arrival makes the item due at once.

The queue is durable: ``enqueue_unclassified`` runs in the ingest's transaction that records
the file, so a crash loses neither. ``claim`` takes due items under a lease (PostgreSQL: ``FOR
UPDATE SKIP LOCKED``, so workers never take the same row; SQLite: its one writer), and commits
at once: no transaction stays open while the endpoint thinks. A worker that dies mid-request
leaves the item to the next claim when the lease runs out. The answer is written only by the
claim that still holds the lease.

The answer becomes rows like the trap's own (device/vision/engine.py ``_verdict``): one
media-level observation per frame, and one event-level observation that is the best frame's
verdict (blank only when every answered frame is blank), rebuilt as each frame is answered.
An event-level ``unclassified`` row the trap sent is replaced by it (its details are kept in
the new row's ``details.replaces``), so the review page and the export show one verdict.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cloud_stub.ingest.database import Database

__all__ = [
    "THUMBNAIL_GRACE_S",
    "Claimed",
    "MachineVerdict",
    "claim",
    "enqueue_unclassified",
    "iso",
    "queue_counts",
    "record_answer",
    "record_failure",
    "retry_later",
]

THUMBNAIL_GRACE_S = 600.0
_IDS = uuid.UUID("6f1d3c52-1b7e-4f59-9d43-5a0c1e8b2f17")  # namespace of the answers' ids
_NAMED = {"animal": 0, "human": 1, "vehicle": 2}


def iso(at: datetime) -> str:
    """One fixed form, so the queue's times compare as strings on both engines."""
    return at.isoformat(timespec="microseconds")


# -- the ingest side (in its transaction) ----------------------------------------------------

_ENQUEUE = """
INSERT INTO prediction_queue(media_id, event_id, state, attempts, due_at, enqueued_at)
SELECT m.media_id, m.event_id, 'queued', 0, ?, ? FROM media m
WHERE m.media_id = ? AND (CAST(? AS TEXT) = 'thumbnail' OR m.file_mediatype = 'image/jpeg')
  AND (EXISTS (SELECT 1 FROM prediction_queue q WHERE q.event_id = m.event_id)
       OR NOT EXISTS (SELECT 1 FROM observations o WHERE o.event_id = m.event_id
                      AND o.classification_method = 'machine'
                      AND o.observation_type != 'unclassified'))
ON CONFLICT(media_id) DO UPDATE SET due_at = least(prediction_queue.due_at, excluded.due_at)
WHERE prediction_queue.state = 'queued' AND prediction_queue.attempts = 0
"""


def enqueue_unclassified(db: Database, media_id: str, kind: str, at: datetime | str) -> None:
    """Queue ``media_id`` for the endpoint if its event is unclassified (module docstring);
    ``kind`` is the file just recorded, ``full`` or ``thumbnail``; ``at`` its record time."""
    at = datetime.fromisoformat(at) if isinstance(at, str) else at
    due = at if kind == "full" else at + timedelta(seconds=THUMBNAIL_GRACE_S)
    db.execute(_ENQUEUE, (iso(due), iso(at), media_id, kind))


# -- the predictor side ------------------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    media_id: str
    event_id: str
    lease: str
    attempts: int  # this try included
    relative: str  # the file to send, in the media store
    kind: str  # full | thumbnail


def claim(db: Database, now: datetime, lease_s: float, limit: int) -> list[Claimed]:
    """Take up to ``limit`` due items for ``lease_s`` seconds, in their own committed
    transaction; each claim counts as an attempt (a worker killed mid-request tried it)."""
    lock = " FOR UPDATE OF q SKIP LOCKED" if db.dialect == "postgresql" else ""
    lease = uuid.uuid4().hex
    db.begin()
    try:
        rows = db.execute(
            "SELECT q.media_id, q.event_id, q.attempts, m.file_path, m.file_mediatype, "
            "m.thumbnail_path FROM prediction_queue q JOIN media m ON m.media_id = q.media_id "
            f"WHERE q.state = 'queued' AND q.due_at <= ? ORDER BY q.due_at LIMIT ?{lock}",
            (iso(now), limit),
        ).fetchall()
        taken: list[Claimed] = []
        for row in rows:
            full = row["file_path"] and row["file_mediatype"] == "image/jpeg"
            relative = row["file_path"] if full else row["thumbnail_path"]
            db.execute(
                "UPDATE prediction_queue SET attempts = attempts + 1, due_at = ?, lease = ? "
                "WHERE media_id = ?",
                (iso(now + timedelta(seconds=lease_s)), lease, row["media_id"]),
            )
            taken.append(
                Claimed(
                    row["media_id"],
                    row["event_id"],
                    lease,
                    int(row["attempts"]) + 1,
                    str(relative),
                    "full" if full else "thumbnail",
                )
            )
        db.commit()
    except BaseException:
        db.rollback()
        raise
    return taken


def retry_later(db: Database, item: Claimed, error: str, due: datetime) -> bool:
    """The endpoint could not answer: keep the item queued until ``due``, saying why."""
    return _settle(
        db,
        "UPDATE prediction_queue SET due_at = ?, last_error = ?, lease = NULL "
        "WHERE media_id = ? AND lease = ? AND state = 'queued'",
        (iso(due), error[:1000], item.media_id, item.lease),
    )


def record_failure(db: Database, item: Claimed, reason: str, at: datetime) -> bool:
    """The endpoint refused this image (or its file is gone): never sent again."""
    return _settle(
        db,
        "UPDATE prediction_queue SET state = 'failed', last_error = ?, finished_at = ?, "
        "lease = NULL WHERE media_id = ? AND lease = ? AND state = 'queued'",
        (reason[:1000], iso(at), item.media_id, item.lease),
    )


def _settle(db: Database, sql: str, params: tuple[Any, ...]) -> bool:
    db.begin()
    try:
        changed = db.execute(sql, params).rowcount == 1
        db.commit()
    except BaseException:
        db.rollback()
        raise
    return changed


@dataclass(frozen=True)
class MachineVerdict:
    """One image's answer, in the observation table's terms."""

    observation_type: str
    scientific_name: str | None
    common_name: str | None
    taxon_level: str | None
    taxonomy: str | None
    probability: float | None
    blank_score: float | None
    classified_by: str  # the endpoint's deployedModelId
    details: dict[str, Any]


_COLUMNS = (
    "observation_id, deployment_id, media_id, event_id, event_start, event_end, "
    "observation_level, observation_type, scientific_name, common_name, taxon_level, taxonomy, "
    "count, classification_method, classified_by, classification_timestamp, "
    "classification_probability, blank_score, details"
)
_INSERT = f"INSERT INTO observations({_COLUMNS}) VALUES ({','.join('?' * 19)})"


def record_answer(db: Database, item: Claimed, verdict: MachineVerdict, at: datetime) -> bool:
    """Store the answer as machine observations and mark the item done, in one transaction;
    False (nothing written) when the lease was lost to another claim."""
    db.begin()
    try:
        suffix = " FOR UPDATE" if db.dialect == "postgresql" else ""
        # The event row first: two workers answering frames of one event take turns.
        event = db.execute(
            f"SELECT event_id, deployment_id, event_start, event_end FROM events "
            f"WHERE event_id = ?{suffix}",
            (item.event_id,),
        ).fetchone()
        held = db.execute(
            "SELECT 1 FROM prediction_queue WHERE media_id = ? AND lease = ? AND state = 'queued'",
            (item.media_id, item.lease),
        ).fetchone()
        if event is None or held is None:
            db.rollback()
            return False
        observation_id = str(uuid.uuid5(_IDS, f"media:{item.media_id}"))
        db.execute(_INSERT, _row(observation_id, event, item.media_id, "media", verdict, iso(at)))
        db.execute(
            "UPDATE prediction_queue SET state = 'done', finished_at = ?, lease = NULL, "
            "last_error = NULL, observation_id = ? WHERE media_id = ?",
            (iso(at), observation_id, item.media_id),
        )
        _rebuild_event_row(db, event, iso(at))
        db.commit()
    except BaseException:
        db.rollback()
        raise
    return True


def _row(
    observation_id: str,
    event: Any,
    media_id: str | None,
    level: str,
    verdict: MachineVerdict,
    at: str,
) -> tuple[Any, ...]:
    return (
        observation_id,
        event["deployment_id"],
        media_id,
        event["event_id"],
        event["event_start"],
        event["event_end"] or event["event_start"],
        level,
        verdict.observation_type,
        verdict.scientific_name,
        verdict.common_name,
        verdict.taxon_level,
        verdict.taxonomy,
        None,
        "machine",
        verdict.classified_by,
        at,
        verdict.probability,
        verdict.blank_score,
        json.dumps(verdict.details),
    )


def _rebuild_event_row(db: Database, event: Any, at: str) -> None:
    """The event-level row from every answered frame, by the trap's rule (module docstring)."""
    frames = [
        dict(r)
        for r in db.execute(
            "SELECT o.* FROM observations o JOIN prediction_queue q "
            "ON q.observation_id = o.observation_id WHERE q.event_id = ? AND q.state = 'done' "
            "ORDER BY o.media_id",
            (event["event_id"],),
        )
    ]
    event_id = str(uuid.uuid5(_IDS, f"event:{event['event_id']}"))
    replaced = _replaced_unclassified(db, event["event_id"], event_id)
    db.execute("DELETE FROM observations WHERE observation_id = ?", (event_id,))
    scores = [f["blank_score"] for f in frames if f["blank_score"] is not None]
    blank_score = min(scores) if scores else None
    if all(f["observation_type"] == "blank" for f in frames):
        best = min(frames, key=lambda f: f["blank_score"] if f["blank_score"] is not None else 1)
        probability = blank_score
    else:
        named = [f for f in frames if f["observation_type"] in _NAMED]
        pool = named or [f for f in frames if f["observation_type"] != "blank"]
        best = min(
            pool,
            key=lambda f: (
                _NAMED.get(f["observation_type"], 3),
                -(f["classification_probability"] or 0.0),
            ),
        )
        probability = best["classification_probability"]
    details = {**json.loads(best["details"] or "{}"), "from_media": best["media_id"]}
    details["frames"] = len(frames)
    if replaced:
        details["replaces"] = replaced
    verdict = MachineVerdict(
        best["observation_type"],
        best["scientific_name"],
        best["common_name"],
        best["taxon_level"],
        best["taxonomy"],
        probability,
        blank_score,
        best["classified_by"],
        details,
    )
    db.execute(_INSERT, _row(event_id, event, None, "event", verdict, at))


def _replaced_unclassified(db: Database, event_id: str, own_id: str) -> list[Any]:
    """The trap's event-level ``unclassified`` rows, removed now (or by an earlier rebuild,
    whose record of them is carried over)."""
    own = db.execute(
        "SELECT details FROM observations WHERE observation_id = ?", (own_id,)
    ).fetchone()
    replaced: list[Any] = (
        list(json.loads(own["details"] or "{}").get("replaces", [])) if own else []
    )
    trap_rows = db.execute(
        "SELECT observation_id, classified_by, details FROM observations WHERE event_id = ? "
        "AND observation_level = 'event' AND classification_method = 'machine' "
        "AND observation_type = 'unclassified' AND observation_id != ?",
        (event_id, own_id),
    ).fetchall()
    for row in trap_rows:
        replaced.append(
            {
                "observation_id": row["observation_id"],
                "classified_by": row["classified_by"],
                "details": json.loads(row["details"]) if row["details"] else None,
            }
        )
        db.execute("DELETE FROM observations WHERE observation_id = ?", (row["observation_id"],))
    return replaced


def queue_counts(db: Database) -> dict[str, int]:
    """Items per state (``queued``, ``done``, ``failed``), for logs and tests."""
    rows = db.execute("SELECT state, count(*) FROM prediction_queue GROUP BY state")
    return {r[0]: int(r[1]) for r in rows}
