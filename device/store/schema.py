"""The device database schema, as an ordered list of migrations.

Each migration runs once, in one transaction, and bumps ``schema_version``. A database whose
version is newer than this code knows is refused (a downgraded package must not write to it).
Columns use Camtrap DP names where one exists, in snake_case. A shipped migration is history:
it is never edited, so its SQL spells states as they were then (``vocabulary`` is where code
takes them from).
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: captures
    """
    CREATE TABLE events (
        event_id        TEXT PRIMARY KEY,             -- UUID made on the device; Camtrap DP eventID
        deployment_id   TEXT NOT NULL,
        capture_method  TEXT NOT NULL,                -- activityDetection | timeLapse
        trigger_source  TEXT NOT NULL,                -- pir | timelapse | manual | test
        started_at      TEXT NOT NULL,                -- ISO 8601 with offset
        ended_at        TEXT,
        frame_count     INTEGER NOT NULL DEFAULT 0,
        clock_source    TEXT NOT NULL,
        clock_synced    INTEGER NOT NULL,
        state           TEXT NOT NULL DEFAULT 'open', -- open | closed | classified
        blank_score     REAL,
        created_seq     INTEGER                       -- monotonically increasing insert order
    );
    CREATE INDEX events_state ON events(state);
    CREATE INDEX events_started ON events(started_at);

    CREATE TABLE media (
        media_id        TEXT PRIMARY KEY,             -- UUID made on the device; Camtrap DP mediaID
        event_id        TEXT NOT NULL REFERENCES events(event_id),
        seq             INTEGER NOT NULL,             -- frame number within the burst
        captured_at     TEXT NOT NULL,                -- ISO 8601 with offset
        path            TEXT,                         -- relative to the data dir
        file_mediatype  TEXT NOT NULL DEFAULT 'image/jpeg',
        sha256          TEXT,
        size            INTEGER,
        width           INTEGER,
        height          INTEGER,
        capture_method  TEXT NOT NULL,
        trigger_source  TEXT NOT NULL,
        clock_source    TEXT NOT NULL,
        clock_synced    INTEGER NOT NULL,
        ir_on           INTEGER NOT NULL DEFAULT 0,
        lores_mean      REAL,                         -- mean luma of the analysis frame
        state           TEXT NOT NULL,                -- stored | failed | missing | evicted
        error           TEXT,
        recovered       INTEGER NOT NULL DEFAULT 0    -- 1: re-registered from a file on start
    );
    CREATE INDEX media_event ON media(event_id);
    CREATE INDEX media_state ON media(state);

    CREATE TABLE observations (
        observation_id             TEXT PRIMARY KEY,
        event_id                   TEXT NOT NULL REFERENCES events(event_id),
        media_id                   TEXT REFERENCES media(media_id),  -- NULL: event-level
        observation_type           TEXT NOT NULL, -- animal|human|vehicle|blank|unknown|unclassified
        scientific_name            TEXT,
        common_name                TEXT,
        taxon_level                TEXT,          -- species|genus|family|order|class|kingdom
        taxonomy                   TEXT,          -- class;order;family;genus;species
        count                      INTEGER,
        classification_probability REAL,
        blank_score                REAL,
        classified_by              TEXT,          -- model name@version
        classification_method      TEXT NOT NULL DEFAULT 'machine',
        classification_timestamp   TEXT NOT NULL,
        bbox_x REAL, bbox_y REAL, bbox_width REAL, bbox_height REAL,
        details                    TEXT           -- JSON: rollup path, geofence, top-k
    );
    CREATE INDEX observations_event ON observations(event_id);

    CREATE TABLE outbox (
        item_id         TEXT PRIMARY KEY,             -- stable id: kind + ref id
        kind            TEXT NOT NULL,                -- metadata | thumbnail | media | telemetry
        ref_id          TEXT NOT NULL,                -- event_id or media_id
        priority        INTEGER NOT NULL,             -- lower is sent first
        state           TEXT NOT NULL DEFAULT 'pending', -- pending | inflight | done | dead
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL DEFAULT 0,      -- unix time
        created_at      REAL NOT NULL,
        bytes           INTEGER NOT NULL DEFAULT 0,
        acked_chunks    INTEGER NOT NULL DEFAULT 0,
        last_error      TEXT
    );
    CREATE INDEX outbox_ready ON outbox(state, priority, next_attempt_at);

    CREATE TABLE counters (
        name  TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    """,
    # 2: uplink bookkeeping
    """
    DROP INDEX outbox_ready;
    -- Claims walk pending rows in (priority, age) order; this index makes that O(batch).
    CREATE INDEX outbox_claim ON outbox(state, priority, created_at);
    CREATE INDEX outbox_ref ON outbox(ref_id);
    ALTER TABLE outbox ADD COLUMN chunk_size INTEGER;  -- chunking of an upload in progress
    ALTER TABLE outbox ADD COLUMN done_at REAL;
    ALTER TABLE media ADD COLUMN thumb_path TEXT;
    ALTER TABLE media ADD COLUMN thumb_sha256 TEXT;
    ALTER TABLE media ADD COLUMN thumb_size INTEGER;
    CREATE TABLE kv (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    # 3: upload facts live on the rows they describe, so done outbox rows can be pruned
    """
    ALTER TABLE events ADD COLUMN uploaded_at REAL;       -- metadata acknowledged (unix time)
    ALTER TABLE media ADD COLUMN uploaded_at REAL;        -- full-resolution file acknowledged
    ALTER TABLE media ADD COLUMN thumb_uploaded_at REAL;  -- thumbnail acknowledged
    UPDATE events SET uploaded_at = (
        SELECT COALESCE(o.done_at, o.created_at) FROM outbox o
        WHERE o.kind = 'metadata' AND o.ref_id = events.event_id AND o.state = 'done');
    UPDATE media SET uploaded_at = (
        SELECT COALESCE(o.done_at, o.created_at) FROM outbox o
        WHERE o.kind = 'media' AND o.ref_id = media.media_id AND o.state = 'done');
    UPDATE media SET thumb_uploaded_at = (
        SELECT COALESCE(o.done_at, o.created_at) FROM outbox o
        WHERE o.kind = 'thumbnail' AND o.ref_id = media.media_id AND o.state = 'done');
    -- Waiting was a pending row with a reason in last_error; it is a state of its own now.
    UPDATE outbox SET state = 'waiting_classification', last_error = NULL
        WHERE state = 'pending' AND last_error = 'waiting for its event to be classified';
    UPDATE outbox SET state = 'waiting_metadata', last_error = NULL
        WHERE state = 'pending'
        AND last_error = 'waiting for its event''s metadata to be acknowledged';
    -- Pruning walks done rows by age.
    CREATE INDEX outbox_done_at ON outbox(done_at);
    """,
    # 4: trail-camera imports (device/importer, docs/trail-cameras.md)
    """
    CREATE TABLE imports (
        import_id        TEXT PRIMARY KEY,
        source           TEXT NOT NULL,              -- the path imported (a mount or a folder)
        label            TEXT NOT NULL,              -- the card's volume label or folder name
        deployment_id    TEXT NOT NULL,
        camera           TEXT,                       -- --camera NAME
        clock_offset_s   REAL NOT NULL DEFAULT 0,    -- added to every EXIF time
        clock_method     TEXT,                       -- NULL | offset | reference
        clock_reference  TEXT,                       -- PHOTO=TIME as given
        requested_by     TEXT NOT NULL,              -- command | agent | card
        started_at       TEXT NOT NULL,
        updated_at       TEXT NOT NULL,
        finished_at      TEXT,
        state            TEXT NOT NULL,              -- running | done | interrupted | disk_full
        message          TEXT,
        files_total      INTEGER NOT NULL DEFAULT 0,
        files_done       INTEGER NOT NULL DEFAULT 0,
        imported         INTEGER NOT NULL DEFAULT 0, -- photos stored by this import
        duplicates       INTEGER NOT NULL DEFAULT 0, -- photos already in the store
        failed           INTEGER NOT NULL DEFAULT 0, -- photos that could not be imported
        not_images       INTEGER NOT NULL DEFAULT 0, -- files that are not JPEG photos
        events           INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE import_failures (
        import_id    TEXT NOT NULL REFERENCES imports(import_id),
        source_path  TEXT NOT NULL,                  -- relative to the import's source
        kind         TEXT NOT NULL,                  -- corrupt | no_time | not_image | unreadable
        reason       TEXT NOT NULL,
        sha256       TEXT,
        kept_path    TEXT,                           -- a copy under failed/, relative
        PRIMARY KEY (import_id, source_path)
    );
    ALTER TABLE events ADD COLUMN import_id TEXT;
    ALTER TABLE events ADD COLUMN camera TEXT;       -- JSON: make, model, serial, name
    ALTER TABLE media ADD COLUMN import_id TEXT;
    ALTER TABLE media ADD COLUMN file_name TEXT;     -- the photo's name on the card
    ALTER TABLE media ADD COLUMN exif_data TEXT;     -- JSON: its original EXIF and maker data
    CREATE INDEX media_sha256 ON media(sha256);
    CREATE INDEX events_import ON events(import_id);
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)
IMPORTS_SCHEMA = 4  # the first version with the imports tables
