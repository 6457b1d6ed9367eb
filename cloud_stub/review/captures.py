"""Reading events for the gallery, fast at 100,000 events: keyset pages over indexed columns.

Every query here reads the ingest database; the only write is ``reviews.save_review``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from datetime import date, timedelta
from typing import Any

from cloud_stub.ingest.database import Database
from cloud_stub.ingest.store import table_columns
from cloud_stub.review.provenance import provenance

# Idempotent, so every server start may run them; ingest's own schema stays untouched. Both
# engines take them as written (PostgreSQL has partial indexes too).
INDEXES = (
    "CREATE INDEX IF NOT EXISTS review_events_time ON events(event_start, event_id)",
    "CREATE INDEX IF NOT EXISTS review_events_device ON events(device_id, event_start, event_id)",
    "CREATE INDEX IF NOT EXISTS review_events_deployment "
    "ON events(deployment_id, event_start, event_id)",
    # The machine's event-level verdict is what the gallery shows and filters on.
    # Covers the filtered columns, so skipping a non-matching event never reads its row.
    "CREATE INDEX IF NOT EXISTS review_obs_verdict ON observations(event_id, observation_type, "
    "scientific_name, classification_probability) "
    "WHERE observation_level = 'event' AND classification_method = 'machine'",
    "CREATE INDEX IF NOT EXISTS review_obs_species ON observations(scientific_name, event_start) "
    "WHERE observation_level = 'event' AND classification_method = 'machine'",
    "CREATE INDEX IF NOT EXISTS review_obs_human ON observations(event_id) "
    "WHERE classification_method = 'human'",
    "CREATE INDEX IF NOT EXISTS review_telemetry_time ON telemetry(device_id, sent_at)",
)

OBSERVATION_TYPES = ("animal", "human", "vehicle", "blank", "unknown", "unclassified")
PAGE_SIZE = 24

# How the ingest store serialises the rollup path: json.dumps with default separators. Both
# spellings are matched so a compact serialiser elsewhere still flags geofence rollups.
_GEOFENCED = (
    "instr(o.details, '\"geofenced\": true') > 0",
    "instr(o.details, '\"geofenced\":true') > 0",
)


# The fleet page's count of imported events reads only this (partial: own captures are not in
# it). Made once the store has the import columns (ingest adds them when it next starts).
IMPORTED_INDEX = (
    "CREATE INDEX IF NOT EXISTS review_events_imported ON events(deployment_id, device_id, "
    "camera_make, camera_model, camera_serial, camera_name, import_source, received_at) "
    "WHERE import_id IS NOT NULL"
)


def ensure_indexes(db: Database) -> None:
    for statement in INDEXES:
        db.execute(statement)
    if "import_id" in table_columns(db, "events"):
        db.execute(IMPORTED_INDEX)


@dataclass
class Filters:
    """The gallery's filters, as they arrive in the query string (all optional)."""

    device: str = ""
    deployment: str = ""
    date_from: str = ""  # YYYY-MM-DD, inclusive
    date_to: str = ""  # YYYY-MM-DD, inclusive
    type: str = ""
    species: str = ""  # scientific name (the page resolves common names first)
    conf_min: str = ""  # percent
    conf_max: str = ""
    needs_review: str = ""  # "1": low confidence or geofence rollup, not yet reviewed
    reviewed: str = ""  # "yes" | "no"
    errors: list[str] = field(default_factory=list)

    @classmethod
    def from_args(cls, args: Any) -> Filters:
        # Every filter but ``errors`` is a string field named as its query parameter.
        values: dict[str, Any] = {f.name: (args.get(f.name) or "").strip() for f in _FIELDS}
        return cls(**values)

    def query(self) -> dict[str, str]:
        """The non-empty filters, for links that keep them."""
        return {f.name: getattr(self, f.name) for f in _FIELDS if getattr(self, f.name)}

    def needs_observation(self) -> bool:
        """Whether only events with a machine observation can match (an inner join)."""
        typed = bool(self.type) and self.type != "unclassified"
        return typed or bool(self.species or self.conf_min or self.conf_max)

    def where(self, threshold: float) -> tuple[list[str], list[Any]]:
        """SQL conditions on ``e`` (events) and ``o`` (machine event observation)."""
        clauses: list[str] = []
        params: list[Any] = []
        if self.device:
            clauses.append("e.device_id = ?")
            params.append(self.device)
        if self.deployment:
            clauses.append("e.deployment_id = ?")
            params.append(self.deployment)
        start = self._date(self.date_from, "from")
        if start is not None:
            clauses.append("e.event_start >= ?")
            params.append(start.isoformat())
        end = self._date(self.date_to, "to")
        if end is not None:
            # Timestamps are ISO strings; everything before the next day's date sorts below it.
            clauses.append("e.event_start < ?")
            params.append((end + timedelta(days=1)).isoformat())
        if self.type == "unclassified":
            clauses.append("(o.observation_type IS NULL OR o.observation_type = 'unclassified')")
        elif self.type in OBSERVATION_TYPES:
            clauses.append("o.observation_type = ?")
            params.append(self.type)
        elif self.type:
            self.errors.append(f"unknown observation type {self.type!r}")
        if self.species:
            clauses.append("o.scientific_name = ?")
            params.append(self.species)
        low = self._percent(self.conf_min, "minimum confidence")
        if low is not None:
            clauses.append("o.classification_probability >= ?")
            params.append(low)
        high = self._percent(self.conf_max, "maximum confidence")
        if high is not None:
            clauses.append("o.classification_probability <= ?")
            params.append(high)
        if self.needs_review:
            clauses.append(
                "(o.observation_id IS NULL OR o.observation_type IN ('unknown', 'unclassified') "
                f"OR o.classification_probability < ? OR {' OR '.join(_GEOFENCED)})"
            )
            params.append(threshold)
            clauses.append(f"NOT {_REVIEWED}")
        if self.reviewed == "yes":
            clauses.append(_REVIEWED)
        elif self.reviewed == "no":
            clauses.append(f"NOT {_REVIEWED}")
        return clauses, params

    def _date(self, text: str, which: str) -> date | None:
        if not text:
            return None
        try:
            return date.fromisoformat(text)
        except ValueError:
            self.errors.append(f"date {which} must be YYYY-MM-DD")
            return None

    def _percent(self, text: str, what: str) -> float | None:
        if not text:
            return None
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not 0.0 <= value <= 100.0:
            self.errors.append(f"{what} must be a percentage from 0 to 100")
            return None
        return value / 100.0


_FIELDS = [f for f in fields(Filters) if f.name != "errors"]
_REVIEWED = (
    "EXISTS (SELECT 1 FROM observations h WHERE h.event_id = e.event_id "
    "AND h.classification_method = 'human')"
)

# Events stay the outer loop, walked newest first along review_events_time, so a page costs
# its 25 rows plus the rows the filters skip, never a sort of every match. Left alone, SQLite
# drives a filter on the observation from the observations side and sorts all its matches
# (200-500 ms at 100,000 events). So the join is pinned to the per-event index, and when the
# filters make it an inner join anyway, CROSS JOIN (SQLite's "keep this order") is used.
# PostgreSQL has neither hint (INDEXED BY, an ordering CROSS JOIN): its planner is left to
# choose, with the same indexes to choose from.
_SELECT = """
SELECT e.event_id, e.device_id, e.deployment_id, e.event_start, e.frame_count,
       e.capture_method, e.blank_score AS event_blank_score,
       o.observation_id, o.observation_type, o.scientific_name, o.common_name, o.taxon_level,
       o.classification_probability, o.blank_score, o.classified_by, o.details
FROM events e
{join} observations o {verdict_index} ON o.event_id = e.event_id
     AND o.observation_level = 'event' AND o.classification_method = 'machine'
"""


_OF_SPECIES = (
    "SELECT event_id FROM observations {species_index} WHERE scientific_name = ? "
    "AND observation_level = 'event' AND classification_method = 'machine'"
)
RARE = 2000  # below this many events a species' own index beats the walk along time


def _hint(db: Database, index: str) -> str:
    """SQLite's ``INDEXED BY`` pin for ``index``; nothing on PostgreSQL, which has none."""
    return f"INDEXED BY {index}" if db.dialect == "sqlite" else ""


def _of_species(db: Database) -> str:
    return _OF_SPECIES.format(species_index=_hint(db, "review_obs_species"))


def _rare(db: Database, species: str) -> bool:
    sql = f"SELECT count(*) FROM ({_of_species(db)} LIMIT {RARE}) AS found"
    return db.execute(sql, (species,)).fetchone()[0] < RARE


@dataclass
class Page:
    rows: list[dict[str, Any]]
    older: str | None  # cursor of the next page (older events), None at the end
    newer: str | None  # cursor of the previous page, None on the first page


def cursor_of(row: dict[str, Any]) -> str:
    return f"{row['event_start']}|{row['event_id']}"


def _split_cursor(cursor: str) -> tuple[str, str] | None:
    start, sep, event_id = cursor.rpartition("|")
    return (start, event_id) if sep and start and event_id else None


def page_query(
    db: Database,
    filters: Filters,
    *,
    threshold: float,
    after: str = "",
    before: str = "",
    limit: int = PAGE_SIZE,
) -> tuple[str, list[Any], bool]:
    """The SQL of one page (fetching one row more than ``limit``), its parameters, and
    whether it runs backwards (newer than ``before``)."""
    clauses, params = filters.where(threshold)
    if filters.species and _rare(db, filters.species):
        # Walking every event to find a handful is the slow case: start from the species.
        clauses.append(f"e.event_id IN ({_of_species(db)})")
        params.append(filters.species)
    key = _split_cursor(before or after) if (before or after) else None
    backwards = bool(before) and key is not None
    if key is not None:
        clauses.append("(e.event_start, e.event_id) " + (">" if backwards else "<") + " (?, ?)")
        params.extend(key)
    order = "ASC" if backwards else "DESC"
    inner = "CROSS JOIN" if db.dialect == "sqlite" else "JOIN"
    sql = (
        _SELECT.format(
            join=inner if filters.needs_observation() else "LEFT JOIN",
            verdict_index=_hint(db, "review_obs_verdict"),
        )
        + (" WHERE " + " AND ".join(clauses) if clauses else "")
        + f" ORDER BY e.event_start {order}, e.event_id {order} LIMIT ?"
    )
    return sql, [*params, limit + 1], backwards


def gallery(
    db: Database,
    filters: Filters,
    *,
    threshold: float,
    after: str = "",
    before: str = "",
    limit: int = PAGE_SIZE,
) -> Page:
    """One page of events, newest first. ``after``: older than that cursor; ``before``: newer."""
    sql, params, backwards = page_query(
        db, filters, threshold=threshold, after=after, before=before, limit=limit
    )
    key = bool(before or after)
    rows = [_decode(r) for r in db.execute(sql, params)]
    more = len(rows) > limit
    rows = rows[:limit]
    if backwards:
        rows.reverse()
        older = cursor_of(rows[-1]) if rows else None
        newer = cursor_of(rows[0]) if rows and more else None
    else:
        older = cursor_of(rows[-1]) if rows and more else None
        newer = cursor_of(rows[0]) if rows and key else None
    _attach(db, rows)
    return Page(rows, older, newer)


def neighbour(
    db: Database, filters: Filters, event: dict[str, Any], *, threshold: float
) -> str | None:
    """The event after ``event`` in the gallery's order under ``filters`` (for auto-advance)."""
    page = gallery(db, filters, threshold=threshold, after=cursor_of(event), limit=1)
    return page.rows[0]["event_id"] if page.rows else None


def _decode(row: Any) -> dict[str, Any]:
    out = dict(row)
    out["details"] = json.loads(out["details"]) if out.get("details") else {}
    out["geofenced"] = any(step.get("geofenced") for step in out["details"].get("rollup", []))
    return out


def _attach(db: Database, rows: list[dict[str, Any]]) -> None:
    """Thumbnails and the latest human review of each row, two queries for the whole page."""
    if not rows:
        return
    ids = [r["event_id"] for r in rows]
    marks = ",".join("?" * len(ids))
    media: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    for m in db.execute(
        f"SELECT media_id, event_id, seq, thumbnail_path, file_path FROM media "
        f"WHERE event_id IN ({marks}) ORDER BY event_id, seq",
        ids,
    ):
        media[m["event_id"]].append(dict(m))
    reviews: dict[str, dict[str, Any]] = {}
    for h in db.execute(
        f"SELECT * FROM observations WHERE event_id IN ({marks}) "
        f"AND classification_method = 'human' ORDER BY classification_timestamp",
        ids,
    ):
        reviews[h["event_id"]] = dict(h)  # the latest wins
    for row in rows:
        row["media"] = media[row["event_id"]]
        row["review"] = reviews.get(row["event_id"])


def event_detail(db: Database, event_id: str) -> dict[str, Any] | None:
    event = db.execute("SELECT * FROM events WHERE event_id = ?", (event_id,)).fetchone()
    if event is None:
        return None
    out: dict[str, Any] = dict(event)
    out["media"] = [
        dict(m)
        for m in db.execute("SELECT * FROM media WHERE event_id = ? ORDER BY seq", (event_id,))
    ]
    observations = [
        _decode(o)
        for o in db.execute(
            "SELECT * FROM observations WHERE event_id = ? ORDER BY classification_timestamp",
            (event_id,),
        )
    ]
    machine = [o for o in observations if o["classification_method"] == "machine"]
    out["machine"] = next((o for o in machine if o["observation_level"] == "event"), None)
    out["frames"] = {o["media_id"]: o for o in machine if o["media_id"]}
    out["reviews"] = [o for o in observations if o["classification_method"] == "human"]
    out["source"] = provenance(out, out["media"])
    return out


def options(db: Database) -> dict[str, list[str]]:
    """Values for the filter drop-downs (small tables)."""
    return {
        "devices": [r[0] for r in db.execute("SELECT device_id FROM devices ORDER BY device_id")],
        "deployments": [
            r[0] for r in db.execute("SELECT deployment_id FROM deployments ORDER BY 1")
        ],
    }


def species_present(db: Database) -> list[str]:
    """Scientific names the machine has given (walks the species index, not the table)."""
    index = _hint(db, "review_obs_species")
    sql = (
        f"SELECT DISTINCT scientific_name FROM observations {index} "
        "WHERE observation_level = 'event' AND classification_method = 'machine' "
        "AND scientific_name IS NOT NULL ORDER BY scientific_name"
    )
    return [r[0] for r in db.execute(sql)]
