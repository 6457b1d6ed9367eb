"""Where ingest keeps what it accepted: SQLite rows shaped like Camtrap DP, media as files.

One connection, one writer thread (the ingest worker). Commits use ``synchronous=FULL`` because
an ack goes to the device right after a commit and the device then forgets the item: a commit
that a power cut could roll back would lose data. Media files are written to a temp name and
renamed, and made durable (``durable.SyncBatch``) before the rows that point at them commit.
"""

from __future__ import annotations

import json
import mimetypes
import os
import sqlite3
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from cloud_stub.ingest.durable import SyncBatch
from device.contracts.errors import UserError
from device.contracts.exitcodes import Exit
from device.contracts.protocol import CaptureMeta, DeviceEvent, MediaKind, Status, Telemetry

DB_NAME = "ingest.sqlite"


class StoreError(UserError):
    """``ingest.sqlite`` is missing, unreadable, damaged, locked or read-only: one line."""


def store_path(root: Path) -> Path:
    return Path(root) / DB_NAME


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def store_error(path: Path, exc: BaseException) -> StoreError:
    """The one line for an SQLite or OS error on the store, with the matching exit code."""
    text = str(exc)
    low = text.lower()
    if isinstance(exc, PermissionError) or "permission" in low or "access" in low:
        return StoreError(f"cannot read {path}: permission denied", Exit.STORE_UNREADABLE)
    if "not a database" in low:
        return StoreError(f"{path} is not an SQLite database ({text})", Exit.STORE_UNREADABLE)
    if "malformed" in low or "corrupt" in low or "disk i/o" in low:
        return StoreError(f"{path} is damaged ({text})", Exit.STORE_UNREADABLE)
    if "readonly" in low or "read-only" in low:
        return StoreError(
            f"{path} is read-only ({text}); this command must write to it", Exit.STORE_READ_ONLY
        )
    if "locked" in low or "busy" in low:
        return StoreError(f"{path} is locked by another writer ({text})", Exit.STORE_LOCKED)
    return StoreError(f"cannot open {path}: {text}", Exit.STORE_UNREADABLE)


def open_store_db(
    root: Path, *, write: bool = False, check: bool = True, timeout: float = 10.0
) -> sqlite3.Connection:
    """The one way every cloud tool opens ``<root>/ingest.sqlite``.

    Read-only (``write=False``, export, report, handoff, serve's reading side) opens with
    ``mode=ro``, and adds ``immutable=1`` when the directory or file cannot be written (a
    read-only mount: WAL readers would need to create ``-shm`` there). ``write=True`` (ingest)
    refuses a read-only store up front. ``check`` runs ``PRAGMA quick_check`` so a truncated
    or damaged file is named now, not as a traceback halfway through. Raises ``StoreError``.
    """
    path = store_path(root)
    if not path.is_file():
        if write:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"cannot create {path}: {exc.strerror or exc}", Exit.CANT_CREATE
                ) from exc
        else:
            raise StoreError(
                f"no ingest store at {path} (run camtrap-cloud ingest first)", Exit.NO_INPUT
            )
    else:
        try:
            with path.open("rb") as handle:
                handle.read(1)
        except OSError as exc:
            raise store_error(path, exc) from exc
    frozen = _read_only_fs(path.parent) or not os.access(path.parent, os.W_OK)
    if path.exists():
        frozen = frozen or not os.access(path, os.W_OK)
    if write and frozen:
        where = "a read-only file system" if _read_only_fs(path.parent) else "not writable"
        raise StoreError(
            f"{path} is read-only ({where}); ingest must write to it", Exit.STORE_READ_ONLY
        )
    try:
        if write:
            db = sqlite3.connect(
                path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
        else:
            uri = f"{path.absolute().as_uri()}?mode=ro" + ("&immutable=1" if frozen else "")
            db = sqlite3.connect(
                uri, uri=True, timeout=timeout, isolation_level=None, check_same_thread=False
            )
        db.row_factory = sqlite3.Row
        if check:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            if path.stat().st_size:
                result = db.execute("PRAGMA quick_check(1)").fetchone()[0]
                if result != "ok":
                    db.close()
                    raise StoreError(f"{path} is damaged ({result})", Exit.STORE_UNREADABLE)
    except sqlite3.Error as exc:
        raise store_error(path, exc) from exc
    return db


def guard_store(prog: str, run: Callable[[], int], root: Path | None = None) -> int:
    """Run a command; a store problem becomes one line on stderr and its exit code.

    Any SQLite error escaping ``run`` (a page that broke after the open) is said the same way.
    """
    from device.contracts.errors import one_line

    try:
        return run()
    except StoreError as exc:
        print(f"{prog}: {one_line(exc.message)}", file=sys.stderr)
        return exc.code
    except sqlite3.DatabaseError as exc:
        where = store_path(root) if root is not None else Path(DB_NAME)
        err = store_error(where, exc)
        print(f"{prog}: {one_line(err.message)}", file=sys.stderr)
        return err.code


def is_read_only(root: Path) -> bool:
    """True when the store cannot be written here (read-only mount, file or dir not writable)."""
    path = store_path(root)
    if _read_only_fs(path.parent) or not os.access(path.parent, os.W_OK):
        return True
    return path.exists() and not os.access(path, os.W_OK)


SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    device_id      TEXT PRIMARY KEY,
    first_seen     TEXT NOT NULL,
    last_seen      TEXT NOT NULL,
    status         TEXT,            -- online | offline (retained status messages)
    status_at      TEXT,
    agent_version  TEXT
);
CREATE TABLE IF NOT EXISTS deployments (  -- Camtrap DP deployments (the fields ingest can know)
    deployment_id     TEXT PRIMARY KEY,
    camera_id         TEXT NOT NULL,      -- the device id
    deployment_start  TEXT NOT NULL,
    deployment_end    TEXT NOT NULL
);
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
);
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
);
CREATE INDEX IF NOT EXISTS media_event ON media(event_id);
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
);
CREATE INDEX IF NOT EXISTS observations_event ON observations(event_id);
CREATE TABLE IF NOT EXISTS telemetry (
    device_id   TEXT NOT NULL,
    item_id     TEXT NOT NULL,
    sent_at     TEXT NOT NULL,
    received_at TEXT NOT NULL,
    payload     TEXT NOT NULL,     -- the whole message as JSON
    PRIMARY KEY (device_id, item_id)
);
CREATE TABLE IF NOT EXISTS device_events (
    device_id   TEXT NOT NULL,
    item_id     TEXT NOT NULL,
    at          TEXT NOT NULL,
    severity    TEXT NOT NULL,
    code        TEXT NOT NULL,
    message     TEXT NOT NULL,
    PRIMARY KEY (device_id, item_id)
);
CREATE TABLE IF NOT EXISTS received (      -- the dedup ledger for whole items
    device_id   TEXT NOT NULL,
    item_id     TEXT NOT NULL,
    type        TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (device_id, item_id)
);
CREATE TABLE IF NOT EXISTS rejections (
    id          INTEGER PRIMARY KEY,
    at          TEXT NOT NULL,
    source      TEXT NOT NULL,     -- topic or subscription
    device_id   TEXT,
    reason      TEXT NOT NULL,
    detail      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""

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


def _add_missing_columns(db: sqlite3.Connection, table: str, columns: dict[str, str]) -> None:
    have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
    for name, decl in columns.items():
        if name not in have:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")


def migrate_deployment_columns(db: sqlite3.Connection) -> None:
    _add_missing_columns(db, "deployments", {**DEPLOYMENT_COLUMNS, **DEPLOYMENT_BOOKKEEPING})


def migrate_event_columns(db: sqlite3.Connection) -> None:
    _add_missing_columns(db, "events", EVENT_COLUMNS)


def table_columns(db: sqlite3.Connection, table: str) -> set[str]:
    """The columns ``table`` has: readers of an older, unmigrated store check before use."""
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


_EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png", "video/mp4": ".mp4"}


def extension_for(mediatype: str) -> str:
    return _EXTENSIONS.get(mediatype) or mimetypes.guess_extension(mediatype) or ".bin"


class IngestStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.media_root = root / "media"
        self.db_path = store_path(root)
        # The worker thread owns the connection; it is created here and only used there.
        self.db = open_store_db(root, write=True)
        try:
            self.media_root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self.db.close()
            raise StoreError(
                f"cannot create {self.media_root}: {exc.strerror or exc}", Exit.CANT_CREATE
            ) from exc
        self.sync = SyncBatch(root)
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.executescript(SCHEMA)
            migrate_deployment_columns(self.db)
            migrate_event_columns(self.db)
        except sqlite3.Error as exc:
            self.db.close()
            raise store_error(self.db_path, exc) from exc

    def close(self) -> None:
        self.db.close()

    # -- transactions ------------------------------------------------------------------------

    def begin(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.db.execute("COMMIT")

    def rollback(self) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")

    def savepoint(self) -> None:
        self.db.execute("SAVEPOINT one_message")

    def release(self) -> None:
        self.db.execute("RELEASE one_message")

    def rollback_to_savepoint(self) -> None:
        self.db.execute("ROLLBACK TO one_message")
        self.db.execute("RELEASE one_message")

    # -- bookkeeping -------------------------------------------------------------------------

    def count(self, name: str, by: int = 1) -> None:
        self.db.execute(
            "INSERT INTO counters(name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (name, by),
        )

    def counters(self) -> dict[str, int]:
        return {r["name"]: r["value"] for r in self.db.execute("SELECT name, value FROM counters")}

    def reject(self, at: str, source: str, device_id: str | None, reason: str, detail: str) -> None:
        self.db.execute(
            "INSERT INTO rejections(at, source, device_id, reason, detail) VALUES (?,?,?,?,?)",
            (at, source, device_id, reason, detail[:1000]),
        )
        self.count(f"rejected.{reason}")

    def seen(self, device_id: str, at: str) -> None:
        self.db.execute(
            "INSERT INTO devices(device_id, first_seen, last_seen) VALUES (?, ?, ?) "
            "ON CONFLICT(device_id) DO UPDATE SET last_seen = excluded.last_seen",
            (device_id, at, at),
        )

    def already_received(self, device_id: str, item_id: str) -> bool:
        row = self.db.execute(
            "SELECT 1 FROM received WHERE device_id = ? AND item_id = ?", (device_id, item_id)
        ).fetchone()
        return row is not None

    def mark_received(self, device_id: str, item_id: str, type_: str, at: str) -> None:
        self.db.execute(
            "INSERT INTO received(device_id, item_id, type, received_at) VALUES (?,?,?,?)",
            (device_id, item_id, type_, at),
        )

    # -- messages ----------------------------------------------------------------------------

    def owner_conflict(self, meta: CaptureMeta) -> str | None:
        """Why ``meta`` may not be stored for its device (ids owned by another device), or None."""
        dep = self.db.execute(
            "SELECT camera_id FROM deployments WHERE deployment_id = ?", (meta.event.deployment_id,)
        ).fetchone()
        if dep is not None and dep["camera_id"] != meta.device_id:
            return f"deployment {meta.event.deployment_id} belongs to {dep['camera_id']}"
        ids = [m.media_id for m in meta.media]
        owners = self.db.execute(
            "SELECT device_id FROM events WHERE event_id = ? AND device_id != ?",
            (meta.event.event_id, meta.device_id),
        ).fetchall()
        if ids:
            marks = ",".join("?" * len(ids))
            owners += self.db.execute(
                f"SELECT device_id FROM media WHERE media_id IN ({marks}) AND device_id != ?",
                (*ids, meta.device_id),
            ).fetchall()
        if owners:
            return f"event or media ids already belong to {owners[0]['device_id']}"
        return None

    def store_capture(self, meta: CaptureMeta, at: str) -> None:
        ev = meta.event
        end = (ev.event_end or ev.event_start).isoformat()
        self.db.execute(
            "INSERT INTO deployments(deployment_id, camera_id, deployment_start, deployment_end) "
            "VALUES (?, ?, ?, ?) ON CONFLICT(deployment_id) DO UPDATE SET "
            "deployment_start = min(deployment_start, excluded.deployment_start), "
            "deployment_end = max(deployment_end, excluded.deployment_end)",
            (ev.deployment_id, meta.device_id, ev.event_start.isoformat(), end),
        )
        camera, imported = ev.camera, ev.imported
        self.db.execute(
            "INSERT OR IGNORE INTO events(event_id, deployment_id, device_id, capture_method, "
            "trigger_source, event_start, event_end, frame_count, clock_source, clock_synced, "
            "blank_score, received_at, camera_make, camera_model, camera_serial, camera_name, "
            "import_id, import_source, clock_offset_s) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                ev.event_id,
                ev.deployment_id,
                meta.device_id,
                ev.capture_method,
                ev.trigger_source,
                ev.event_start.isoformat(),
                ev.event_end.isoformat() if ev.event_end else None,
                ev.frame_count,
                ev.clock_source,
                ev.clock_synced,
                ev.blank_score,
                at,
                camera.make if camera else None,
                camera.model if camera else None,
                camera.serial if camera else None,
                camera.name if camera else None,
                imported.import_id if imported else None,
                imported.source if imported else None,
                imported.clock_offset_s if imported else None,
            ),
        )
        self.db.executemany(
            "INSERT OR IGNORE INTO media(media_id, deployment_id, event_id, device_id, seq, "
            "capture_method, timestamp, file_name, file_mediatype, sha256, size, width, height, "
            "exif_data, clock_source, clock_synced, ir_on) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    m.media_id,
                    m.deployment_id,
                    m.event_id,
                    meta.device_id,
                    m.seq,
                    m.capture_method,
                    m.timestamp.isoformat(),
                    m.file_name,
                    m.file_mediatype,
                    m.sha256,
                    m.size,
                    m.width,
                    m.height,
                    json.dumps(m.exif_data) if m.exif_data is not None else None,
                    m.clock_source,
                    m.clock_synced,
                    m.ir_on,
                )
                for m in meta.media
            ],
        )
        self.db.executemany(
            "INSERT OR IGNORE INTO observations VALUES "
            "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    o.observation_id,
                    o.deployment_id,
                    o.media_id,
                    o.event_id,
                    o.event_start.isoformat(),
                    o.event_end.isoformat(),
                    o.observation_level,
                    o.observation_type,
                    o.scientific_name,
                    o.common_name,
                    o.taxon_level,
                    o.taxonomy,
                    o.count,
                    o.bbox_x,
                    o.bbox_y,
                    o.bbox_width,
                    o.bbox_height,
                    o.classification_method,
                    o.classified_by,
                    o.classification_timestamp.isoformat() if o.classification_timestamp else None,
                    o.classification_probability,
                    o.blank_score,
                    json.dumps(o.details) if o.details is not None else None,
                )
                for o in meta.observations
            ],
        )

    def store_telemetry(self, msg: Telemetry, at: str) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO telemetry VALUES (?,?,?,?,?)",
            (msg.device_id, msg.item_id, msg.sent_at.isoformat(), at, msg.model_dump_json()),
        )

    def store_device_event(self, msg: DeviceEvent) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO device_events VALUES (?,?,?,?,?,?)",
            (msg.device_id, msg.item_id, msg.at.isoformat(), msg.severity, msg.code, msg.message),
        )

    def store_status(self, msg: Status, at: str) -> None:
        self.db.execute(
            "UPDATE devices SET status = ?, status_at = ?, agent_version = "
            "coalesce(?, agent_version) WHERE device_id = ?",
            (msg.state, at, msg.agent_version, msg.device_id),
        )

    def record_deployment(self, deployment_id: str, camera_id: str | None, **fields: Any) -> None:
        """Create or complete a deployment with provisioning's Camtrap DP fields (snake_case).

        ``deployment_start``/``deployment_end`` widen the span ingest saw; other fields given
        replace what was recorded. Unknown field names are refused. ``camera_id`` None keeps
        the camera ingest saw (a record that only says where an imported camera stood).
        """
        unknown = set(fields) - set(DEPLOYMENT_COLUMNS) - {"deployment_start", "deployment_end"}
        if unknown:
            raise ValueError(f"unknown deployment fields: {sorted(unknown)}")
        start = fields.pop("deployment_start", None)
        end = fields.pop("deployment_end", None)
        known = self.db.execute(
            "SELECT 1 FROM deployments WHERE deployment_id = ?", (deployment_id,)
        ).fetchone()
        if known is None:
            if start is None:
                raise ValueError(f"new deployment {deployment_id} needs deployment_start")
            if camera_id is None:
                raise ValueError(f"new deployment {deployment_id} needs a camera_id")
            self.db.execute(
                "INSERT INTO deployments(deployment_id, camera_id, deployment_start, "
                "deployment_end) VALUES (?, ?, ?, ?)",
                (deployment_id, camera_id, start, end or start),
            )
        else:
            self.db.execute(
                "UPDATE deployments SET camera_id = coalesce(?, camera_id), "
                "deployment_start = min(deployment_start, coalesce(?, deployment_start)), "
                "deployment_end = max(deployment_end, coalesce(?, deployment_end)) "
                "WHERE deployment_id = ?",
                (camera_id, start, end, deployment_id),
            )
        if camera_id is not None:
            self.db.execute(
                "UPDATE deployments SET camera_id_recorded = 1 WHERE deployment_id = ?",
                (deployment_id,),
            )
        if fields:
            sets = ", ".join(f"{name} = ?" for name in fields)
            self.db.execute(
                f"UPDATE deployments SET {sets} WHERE deployment_id = ?",
                (*fields.values(), deployment_id),
            )

    # -- media -------------------------------------------------------------------------------

    def media_row(self, media_id: str) -> sqlite3.Row | None:
        return self.db.execute("SELECT * FROM media WHERE media_id = ?", (media_id,)).fetchone()

    def media_target(self, row: sqlite3.Row, kind: MediaKind) -> Path:
        """Relative path of a received file: ``<deployment>/[thumbnails/]<mediaID><ext>``."""
        if kind == "thumbnail":
            return Path(row["deployment_id"]) / "thumbnails" / f"{row['media_id']}.jpg"
        return (
            Path(row["deployment_id"]) / f"{row['media_id']}{extension_for(row['file_mediatype'])}"
        )

    def install_file(self, pieces: Iterable[bytes], relative: Path) -> None:
        """Write a received file into the media tree; durable at the batch's ``flush``."""
        self.sync.write(self.media_root / relative, pieces)

    def record_file(
        self, media_id: str, kind: MediaKind, relative: Path, sha256: str, at: str
    ) -> None:
        if kind == "thumbnail":
            sql = (
                "UPDATE media SET thumbnail_path = ?, thumbnail_sha256 = ?, "
                "thumbnail_received_at = ? WHERE media_id = ?"
            )
        else:
            sql = (
                "UPDATE media SET file_path = ?, sha256 = ?, file_received_at = ? "
                "WHERE media_id = ?"
            )
        self.db.execute(sql, (str(relative), sha256, at, media_id))

    def rows(self, table: str) -> list[dict[str, Any]]:
        """Every row of one table, for tests and the CLI's summary."""
        if table not in {
            "devices",
            "deployments",
            "events",
            "media",
            "observations",
            "telemetry",
            "device_events",
            "received",
            "rejections",
        }:
            raise ValueError(table)
        return [dict(r) for r in self.db.execute(f"SELECT * FROM {table}")]
