"""The ingest database's schema, and the one migration mechanism both engines share.

``migrate(db)`` brings any store up to ``SCHEMA_VERSION``: it records each applied step in
``schema_migrations`` and runs the missing ones in order, in one transaction. On PostgreSQL an
advisory lock makes the workers that start together wait for the first one's migration instead
of racing it. Step 1 is the schema as it stood before this table existed: it only creates what
is missing, so a store made by an older ingest (SQLite) is adopted in place, never rewritten.
DDL is written with SQLite's type names; ``database.to_postgres`` maps them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from cloud_stub.ingest.database import Database

BASE_TABLES = (
    """
CREATE TABLE IF NOT EXISTS devices (
    device_id      TEXT PRIMARY KEY,
    first_seen     TEXT NOT NULL,
    last_seen      TEXT NOT NULL,
    status         TEXT,            -- online | offline (retained status messages)
    status_at      TEXT,
    agent_version  TEXT
)
""",
    """
CREATE TABLE IF NOT EXISTS deployments (  -- Camtrap DP deployments (the fields ingest can know)
    deployment_id     TEXT PRIMARY KEY,
    camera_id         TEXT NOT NULL,      -- the device id
    deployment_start  TEXT NOT NULL,
    deployment_end    TEXT NOT NULL
)
""",
    """
CREATE TABLE IF NOT EXISTS events (
    event_id        TEXT PRIMARY KEY,
    deployment_id   TEXT NOT NULL REFERENCES deployments(deployment_id),
    device_id       TEXT NOT NULL,
    capture_method  TEXT NOT NULL,
    trigger_source  TEXT NOT NULL,
    event_start     TEXT NOT NULL,
    event_end       TEXT,
    frame_count     INTEGER NOT NULL,
    clock_source    TEXT NOT NULL,
    clock_synced    INTEGER NOT NULL,
    blank_score     REAL,
    received_at     TEXT NOT NULL
)
""",
    """
CREATE TABLE IF NOT EXISTS media (        -- Camtrap DP media, plus what the device measured
    media_id          TEXT PRIMARY KEY,
    deployment_id     TEXT NOT NULL REFERENCES deployments(deployment_id),
    event_id          TEXT NOT NULL REFERENCES events(event_id),
    device_id         TEXT NOT NULL,
    seq               INTEGER NOT NULL,
    capture_method    TEXT NOT NULL,
    timestamp         TEXT NOT NULL,
    file_path         TEXT,               -- relative to the media root; NULL until received
    file_name         TEXT NOT NULL,
    file_mediatype    TEXT NOT NULL,
    sha256            TEXT,
    size              INTEGER,
    width             INTEGER,
    height            INTEGER,
    exif_data         TEXT,
    clock_source      TEXT NOT NULL,
    clock_synced      INTEGER NOT NULL,
    ir_on             INTEGER NOT NULL,
    thumbnail_path    TEXT,
    thumbnail_sha256  TEXT,
    file_received_at  TEXT,
    thumbnail_received_at TEXT
)
""",
    """
CREATE INDEX IF NOT EXISTS media_event ON media(event_id)
""",
    """
CREATE TABLE IF NOT EXISTS observations (  -- Camtrap DP observations
    observation_id             TEXT PRIMARY KEY,
    deployment_id              TEXT NOT NULL REFERENCES deployments(deployment_id),
    media_id                   TEXT REFERENCES media(media_id),
    event_id                   TEXT NOT NULL REFERENCES events(event_id),
    event_start                TEXT NOT NULL,
    event_end                  TEXT NOT NULL,
    observation_level          TEXT NOT NULL,
    observation_type           TEXT NOT NULL,
    scientific_name            TEXT,
    common_name                TEXT,
    taxon_level                TEXT,
    taxonomy                   TEXT,
    count                      INTEGER,
    bbox_x REAL, bbox_y REAL, bbox_width REAL, bbox_height REAL,
    classification_method      TEXT NOT NULL,
    classified_by              TEXT,
    classification_timestamp   TEXT,
    classification_probability REAL,
    blank_score                REAL,
    details                    TEXT
)
""",
    """
CREATE INDEX IF NOT EXISTS observations_event ON observations(event_id)
""",
    """
CREATE TABLE IF NOT EXISTS telemetry (
    device_id   TEXT NOT NULL,
    item_id     TEXT NOT NULL,
    sent_at     TEXT NOT NULL,
    received_at TEXT NOT NULL,
    payload     TEXT NOT NULL,     -- the whole message as JSON
    PRIMARY KEY (device_id, item_id)
)
""",
    """
CREATE TABLE IF NOT EXISTS device_events (
    device_id   TEXT NOT NULL,
    item_id     TEXT NOT NULL,
    at          TEXT NOT NULL,
    severity    TEXT NOT NULL,
    code        TEXT NOT NULL,
    message     TEXT NOT NULL,
    PRIMARY KEY (device_id, item_id)
)
""",
    """
CREATE TABLE IF NOT EXISTS received (      -- the dedup ledger for whole items
    device_id   TEXT NOT NULL,
    item_id     TEXT NOT NULL,
    type        TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (device_id, item_id)
)
""",
    """
CREATE TABLE IF NOT EXISTS rejections (
    id          INTEGER PRIMARY KEY,
    at          TEXT NOT NULL,
    source      TEXT NOT NULL,     -- topic or subscription
    device_id   TEXT,
    reason      TEXT NOT NULL,
    detail      TEXT NOT NULL
)
""",
    """
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
)
""",
)

# -- Camtrap DP deployment fields (migration; read by cloud_stub/export) -----------------------
# Ingest alone knows a deployment's camera and time span; provisioning records where and how
# the camera was set up. These columns are added in place to stores created before them, so
# the migration is idempotent and never rewrites rows. NULL means "not recorded".
DEPLOYMENT_COLUMNS = {
    "location_id": "TEXT",
    "location_name": "TEXT",
    "latitude": "REAL",
    "longitude": "REAL",
    "coordinate_uncertainty": "INTEGER",  # metres
    "setup_by": "TEXT",
    "camera_model": "TEXT",
    "camera_delay": "INTEGER",  # seconds
    "camera_height": "REAL",  # metres
    "camera_depth": "REAL",
    "camera_tilt": "INTEGER",  # degrees, -90..90
    "camera_heading": "INTEGER",  # degrees, 0..360
    "detection_distance": "REAL",
    "timestamp_issues": "INTEGER",
    "bait_use": "INTEGER",
    "feature_type": "TEXT",
    "habitat": "TEXT",
    "deployment_groups": "TEXT",
    "deployment_tags": "TEXT",
    "deployment_comments": "TEXT",
}


# Whether provisioning's record named the deployment's camera (``record_deployment``): until
# then ``camera_id`` is only the device that uploaded the events, and the export may prefer
# the serial number an imported trail camera reported.
DEPLOYMENT_BOOKKEEPING = {"camera_id_recorded": "INTEGER"}

# -- where an event came from (migration; trail-camera imports, docs/trail-cameras.md) -------
# ``camtrap import`` sends the camera (EXIF Make/Model/serial, the ``--camera`` name) and the
# import (its id, the card or folder, the clock offset applied) with each event. All NULL for
# a trap's own captures: the registry describes that camera.
EVENT_COLUMNS = {
    "camera_make": "TEXT",
    "camera_model": "TEXT",
    "camera_serial": "TEXT",
    "camera_name": "TEXT",
    "import_id": "TEXT",
    "import_source": "TEXT",
    "clock_offset_s": "REAL",  # seconds added to every EXIF time of the import
}


def _add_missing_columns(db: Database, table: str, columns: dict[str, str]) -> None:
    have = db.columns(table)
    for name, decl in columns.items():
        if name not in have:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")


def table_columns(db: Database, table: str) -> set[str]:
    """The columns ``table`` has: readers of an older, unmigrated store check before use."""
    return db.columns(table)


def _base(db: Database) -> None:
    for statement in BASE_TABLES:
        db.execute(statement)
    _add_missing_columns(db, "deployments", {**DEPLOYMENT_COLUMNS, **DEPLOYMENT_BOOKKEEPING})
    _add_missing_columns(db, "events", EVENT_COLUMNS)


# -- step 2: several workers (docs/scale.md) ---------------------------------------------------
# Chunks of one media item may reach different workers: they wait here, in the database every
# worker shares, not in one worker's directory. Counters get one row per (name, shard): a worker
# adds to its own shard, so two workers never queue on one hot row.
FLEET_TABLES = (
    """
CREATE TABLE IF NOT EXISTS partial_chunks (
    media_id     TEXT NOT NULL,
    kind         TEXT NOT NULL,      -- full | thumbnail
    sha256       TEXT NOT NULL,      -- of the whole file: a re-cut upload is another set
    total_size   INTEGER NOT NULL,
    chunk_size   INTEGER NOT NULL,
    idx          INTEGER NOT NULL,
    data         BLOB NOT NULL,
    received_at  TEXT NOT NULL,
    PRIMARY KEY (media_id, kind, sha256, total_size, chunk_size, idx)
)""",
    """
CREATE TABLE IF NOT EXISTS counter_shards (
    name   TEXT NOT NULL,
    shard  INTEGER NOT NULL,
    value  INTEGER NOT NULL,
    PRIMARY KEY (name, shard)
)""",
    # What the readers filter and join on (the review page adds its own, review/captures.py).
    "CREATE INDEX IF NOT EXISTS media_deployment_time ON media(deployment_id, timestamp)",
    "CREATE INDEX IF NOT EXISTS observations_media ON observations(media_id)",
    "CREATE INDEX IF NOT EXISTS events_deployment_start ON events(deployment_id, event_start)",
)


def _fleet(db: Database) -> None:
    for statement in FLEET_TABLES:
        db.execute(statement)
    if "value" in db.columns("counters"):  # the counts so far become shard 0
        db.execute(
            "INSERT INTO counter_shards(name, shard, value) SELECT name, 0, value FROM counters"
        )
        db.execute("DROP TABLE counters")


# -- step 3: where the media files are ----------------------------------------------------------
# The ingest records its media store (``local`` or ``gs://bucket/prefix``) here, so every reader
# of this database finds the files without being told again (cloud_stub/media).
SETTINGS_TABLE = (
    "CREATE TABLE IF NOT EXISTS store_settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
)


def _settings(db: Database) -> None:
    db.execute(SETTINGS_TABLE)


# -- step 4: media sent to the prediction endpoint (prediction_queue.py) ------------------------
# One row per media item of an event that arrived with no machine classification, queued in
# the transaction that recorded its file, so an ingest that dies loses none. ``due_at`` is when
# a predictor may next take it (a claim moves it past the lease; a failed try, past the backoff).
PREDICTION_TABLES = (
    """
CREATE TABLE IF NOT EXISTS prediction_queue (
    media_id        TEXT PRIMARY KEY REFERENCES media(media_id),
    event_id        TEXT NOT NULL REFERENCES events(event_id),
    state           TEXT NOT NULL,           -- queued | done | failed
    attempts        INTEGER NOT NULL,
    due_at          TEXT NOT NULL,           -- ISO 8601 UTC
    lease           TEXT,                    -- the claim sending it now
    last_error      TEXT,
    enqueued_at     TEXT NOT NULL,
    finished_at     TEXT,
    observation_id  TEXT                     -- its media-level answer, once done
)""",
    "CREATE INDEX IF NOT EXISTS prediction_queue_due ON prediction_queue(state, due_at)",
    "CREATE INDEX IF NOT EXISTS prediction_queue_event ON prediction_queue(event_id)",
)


def _prediction_queue(db: Database) -> None:
    for statement in PREDICTION_TABLES:
        db.execute(statement)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[Database], None]


MIGRATIONS: list[Migration] = [
    Migration(1, "base tables", _base),
    Migration(2, "shared chunks, counter shards, reader indexes", _fleet),
    Migration(3, "store settings (the media location)", _settings),
    Migration(4, "prediction queue", _prediction_queue),
]
SCHEMA_VERSION = MIGRATIONS[-1].version

# Any fixed number: the key of the advisory lock every ingest worker takes to migrate.
_MIGRATION_LOCK = 0x63616D74


def applied_versions(db: Database) -> set[int]:
    if "version" not in db.columns("schema_migrations"):
        return set()
    return {int(r[0]) for r in db.execute("SELECT version FROM schema_migrations")}


def migrate(db: Database) -> list[int]:
    """Apply the missing steps in one transaction; returns the versions applied."""
    db.begin()
    try:
        if db.dialect == "postgresql":
            db.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
        db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version INTEGER PRIMARY KEY NOT NULL, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        done = applied_versions(db)
        applied: list[int] = []
        for step in MIGRATIONS:
            if step.version in done:
                continue
            step.apply(db)
            db.execute(
                "INSERT INTO schema_migrations(version, name, applied_at) VALUES (?, ?, ?)",
                (step.version, step.name, datetime.now(UTC).isoformat()),
            )
            applied.append(step.version)
        db.commit()
    except BaseException:
        db.rollback()
        raise
    return applied
