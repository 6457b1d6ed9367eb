"""The ``observations`` table: what was seen in an event (or one of its frames), and by whom.

``Observations`` is the door other rooms read through; ``insert`` runs inside the store's own
transaction when a verdict is recorded (``verdicts``).
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from device.contracts.protocol import ClassificationMethod, ObservationType, TaxonLevel
from device.store.db import Source


class ObservationInput(Protocol):
    """One row of a classification, as the vision room hands it over (its ``ObservationRow``
    fits as it is)."""

    @property
    def media_id(self) -> str | None: ...  # None: the observation is about the whole event
    @property
    def observation_type(self) -> ObservationType: ...
    @property
    def scientific_name(self) -> str | None: ...
    @property
    def common_name(self) -> str | None: ...
    @property
    def taxon_level(self) -> TaxonLevel | None: ...
    @property
    def taxonomy(self) -> str | None: ...
    @property
    def count(self) -> int | None: ...
    @property
    def classification_probability(self) -> float | None: ...
    @property
    def blank_score(self) -> float | None: ...
    @property
    def classified_by(self) -> str: ...  # "name@version"; empty: no model
    @property
    def bbox(self) -> tuple[float, float, float, float] | None: ...
    @property
    def details(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ObservationRecord:
    observation_id: str
    event_id: str
    media_id: str | None
    observation_type: ObservationType
    scientific_name: str | None
    common_name: str | None
    taxon_level: TaxonLevel | None
    taxonomy: str | None
    count: int | None
    classification_probability: float | None
    blank_score: float | None
    classified_by: str | None
    classification_method: ClassificationMethod
    classification_timestamp: datetime | None
    bbox_x: float | None
    bbox_y: float | None
    bbox_width: float | None
    bbox_height: float | None
    details: dict[str, Any] | None


class Observations:
    def __init__(self, source: Source) -> None:
        self.source = source

    def for_event(self, event_id: str) -> list[ObservationRecord]:
        """The event-level rows first, then per-frame rows, each in the order written."""
        with self.source.read() as conn:
            rows = conn.execute(
                "SELECT * FROM observations WHERE event_id = ?"
                " ORDER BY media_id IS NOT NULL, rowid",
                (event_id,),
            ).fetchall()
        return [_record(r) for r in rows]

    def event_type_counts(self) -> dict[str, int]:
        """observation type -> events whose event-level observation has it."""
        with self.source.read() as conn:
            rows = conn.execute(
                "SELECT observation_type, COUNT(*) FROM observations WHERE media_id IS NULL"
                " GROUP BY observation_type"
            ).fetchall()
        return {kind: int(n) for kind, n in rows}

    def species_counts(self) -> list[tuple[str, int]]:
        """(name, events) of every animal named at event level, the most frequent first."""
        with self.source.read() as conn:
            rows = conn.execute(
                "SELECT COALESCE(common_name, scientific_name, '(unnamed)'), COUNT(*)"
                " FROM observations WHERE media_id IS NULL AND observation_type = 'animal'"
                " GROUP BY 1 ORDER BY 2 DESC"
            ).fetchall()
        return [(name, int(n)) for name, n in rows]


# -- inside the store's own transactions ---------------------------------------------------------


def insert(
    conn: sqlite3.Connection, event_id: str, row: ObservationInput, classified_at: str
) -> None:
    """A machine observation of ``event_id`` (``classified_at``: ISO 8601 with offset)."""
    bbox = row.bbox or (None, None, None, None)
    conn.execute(
        "INSERT INTO observations (observation_id, event_id, media_id, observation_type,"
        " scientific_name, common_name, taxon_level, taxonomy, count,"
        " classification_probability, blank_score, classified_by, classification_method,"
        " classification_timestamp, bbox_x, bbox_y, bbox_width, bbox_height, details)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,'machine',?,?,?,?,?,?)",
        (
            str(uuid.uuid4()),
            event_id,
            row.media_id,
            row.observation_type,
            row.scientific_name,
            row.common_name,
            row.taxon_level,
            row.taxonomy,
            row.count,
            row.classification_probability,
            row.blank_score,
            row.classified_by or None,
            classified_at,
            *bbox,
            json.dumps(row.details, default=str),
        ),
    )


def _record(row: sqlite3.Row) -> ObservationRecord:
    stamp = row["classification_timestamp"]
    return ObservationRecord(
        observation_id=row["observation_id"],
        event_id=row["event_id"],
        media_id=row["media_id"],
        observation_type=row["observation_type"],
        scientific_name=row["scientific_name"],
        common_name=row["common_name"],
        taxon_level=row["taxon_level"],
        taxonomy=row["taxonomy"],
        count=row["count"],
        classification_probability=row["classification_probability"],
        blank_score=row["blank_score"],
        classified_by=row["classified_by"],
        classification_method=row["classification_method"],
        classification_timestamp=datetime.fromisoformat(stamp) if stamp else None,
        bbox_x=row["bbox_x"],
        bbox_y=row["bbox_y"],
        bbox_width=row["bbox_width"],
        bbox_height=row["bbox_height"],
        details=json.loads(row["details"]) if row["details"] else None,
    )
