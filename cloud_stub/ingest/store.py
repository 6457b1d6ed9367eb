"""Where ingest keeps what it accepted: rows shaped like Camtrap DP, media as files.

The rows live in SQLite (the embedded default) or PostgreSQL (several workers at once,
docs/scale.md), through ``cloud_stub.ingest.database``. Each worker holds one connection.
SQLite commits with ``synchronous=FULL`` because an ack goes to the device right after a
commit and the device then forgets the item: a commit that a power cut could roll back would
lose data. Media files are written to a temp name and renamed, and made durable
(``durable.SyncBatch``) before the rows that point at them commit.

Several workers on PostgreSQL must not queue on hot rows: counters go to the worker's own
shard, and a deployment's time span is widened once per batch, in id order, just before the
commit (so two workers never take the same rows in opposite orders).
"""

from __future__ import annotations

import contextlib
import json
import mimetypes
import shutil
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cloud_stub.ingest.database import Database
from cloud_stub.ingest.opening import (
    DB_ENV,
    DB_NAME,
    MEDIA_SETTING,
    StoreError,
    database_error,
    describe,
    guard_store,
    is_read_only,
    is_transient,
    make_dir,
    open_store_db,
    open_store_media,
    recorded_media,
    store_error,
    store_path,
)
from cloud_stub.ingest.schema import (
    DEPLOYMENT_COLUMNS,
    EVENT_COLUMNS,
    migrate,
    table_columns,
)
from cloud_stub.media import MediaStorage, open_media
from device.contracts.exitcodes import Exit
from device.contracts.protocol import (
    CaptureMeta,
    DeviceEvent,
    MediaChunk,
    MediaKind,
    Status,
    Telemetry,
)

__all__ = [
    "DB_ENV",
    "DB_NAME",
    "DEPLOYMENT_COLUMNS",
    "EVENT_COLUMNS",
    "IngestStore",
    "StoreError",
    "database_error",
    "extension_for",
    "guard_store",
    "is_read_only",
    "is_transient",
    "open_store_db",
    "open_store_media",
    "store_error",
    "store_path",
    "table_columns",
]

# Counter rows per name on PostgreSQL (``_pick_shard``).
COUNTER_SHARDS = 16
_SAVEPOINT = "one_message"

_EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png", "video/mp4": ".mp4"}


def extension_for(mediatype: str) -> str:
    return _EXTENSIONS.get(mediatype) or mimetypes.guess_extension(mediatype) or ".bin"


class IngestStore:
    def __init__(self, root: Path, *, url: str | None = None, media: str | None = None) -> None:
        self.root = root
        self.media_root = root / "media"
        self.where = describe(root, url)
        self._url = url
        # The worker thread owns the connection; it is created here and only used there.
        self.db = self._connect()
        try:
            self.media = self._open_media(media)
            self._adopt_partial_dir()
        except BaseException:
            self.db.close()
            raise
        self.shard = self._pick_shard()
        # What this batch will add at its commit (see the module docstring), and the copy
        # taken at each message's savepoint, so a rolled-back message adds nothing.
        self._counts: dict[str, int] = {}
        self._spans: dict[str, tuple[str, str]] = {}
        self._last_seen: dict[str, str] = {}
        self._saved: tuple[dict[str, int], dict[str, tuple[str, str]], dict[str, str]] = (
            {},
            {},
            {},
        )
        # Devices whose row is committed: ``_flush_last_seen`` only updates them.
        self._known_devices: set[str] = set()
        self._known_deployments: set[str] = set()
        self._side: Database | None = None  # PostgreSQL: new deployments (_ensure_deployment)

    def _connect(self) -> Database:
        db = open_store_db(self.root, write=True, url=self._url)
        try:
            if db.dialect == "sqlite":
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                db.execute("PRAGMA foreign_keys=ON")
            migrate(db)
        except Exception as exc:
            db.close()
            err = database_error(self.root, exc)
            if err is None:
                raise
            raise err from exc
        return db

    def _open_media(self, asked: str | None) -> MediaStorage:
        """The media store: the one this database recorded, else ``asked`` (recorded now)."""
        recorded = recorded_media(self.db)
        spec = recorded or asked or "local"
        if asked and recorded and asked != recorded:
            raise StoreError(
                f"{self.where} keeps its media in {recorded}; --media {asked} would split them",
                Exit.USAGE,
            )
        media = open_media(spec, self.root)
        if spec == "local":
            make_dir(self.media_root)
        if recorded is None:
            self.db.begin()
            self.db.execute(
                "INSERT OR IGNORE INTO store_settings(key, value) VALUES (?, ?)",
                (MEDIA_SETTING, spec),
            )
            self.db.commit()
        return media

    def _pick_shard(self) -> int:
        """This worker's counter rows: by its server process id, so workers that run at the
        same time rarely share one (SQLite has one writer: always 0)."""
        if self.db.dialect != "postgresql":
            return 0
        return int(self.db.execute("SELECT pg_backend_pid()").fetchone()[0]) % COUNTER_SHARDS

    def _adopt_partial_dir(self) -> None:
        """Move chunks an older ingest kept in ``<root>/partial/`` into ``partial_chunks``.

        Devices resume after the chunks ingest acknowledged, so dropping them would leave those
        files unfinishable. One directory per upload: ``<mediaID>.<kind>.<sha256>.<size>.
        <chunkSize>/<index:07d>.chunk``.
        """
        old = self.root / "partial"
        if not old.is_dir():
            return
        at = datetime.now(UTC).isoformat()
        self.db.begin()
        try:
            for upload in sorted(old.iterdir()):
                parts = upload.name.split(".")
                if len(parts) != 5 or not upload.is_dir():
                    continue
                media_id, kind, sha256, size, chunk_size = parts
                for piece in sorted(upload.glob("*.chunk")):
                    self.db.execute(
                        "INSERT OR IGNORE INTO partial_chunks(media_id, kind, sha256, "
                        "total_size, chunk_size, idx, data, received_at) "
                        "VALUES (?,?,?,?,?,?,?,?)",
                        (
                            media_id,
                            kind,
                            sha256,
                            int(size),
                            int(chunk_size),
                            int(piece.stem),
                            piece.read_bytes(),
                            at,
                        ),
                    )
            self.db.commit()
        except BaseException:
            self.db.rollback()
            raise
        shutil.rmtree(old, ignore_errors=True)

    def reconnect(self) -> None:
        """A fresh connection after the server went away (PostgreSQL restarted)."""
        with contextlib.suppress(Exception):  # the old link is gone whatever it says
            self.db.close()
        self._close_side()
        self.db = self._connect()

    def _ensure_deployment(self, deployment_id: str, camera_id: str, start: str, end: str) -> None:
        """The deployment row an event needs (its foreign key).

        On PostgreSQL a new deployment is committed at once on a second connection: created
        inside the batch, every other worker's batch with an event of it would wait for this
        batch's commit, and a fleet's first batches would run one at a time. A batch that then
        fails leaves only the row, with this event's span, which the resent event widens to.
        """
        sql = (
            "INSERT OR IGNORE INTO deployments(deployment_id, camera_id, deployment_start, "
            "deployment_end) VALUES (?, ?, ?, ?)"
        )
        params = (deployment_id, camera_id, start, end)
        if self.db.dialect == "sqlite" or deployment_id in self._known_deployments:
            self.db.execute(sql, params)
            return
        if self._side is None:
            self._side = open_store_db(self.root, write=True, url=self._url)
        self._side.execute(sql, params)  # autocommit: one short statement
        self._known_deployments.add(deployment_id)

    def _close_side(self) -> None:
        if self._side is not None:
            with contextlib.suppress(Exception):
                self._side.close()
            self._side = None

    @property
    def broken(self) -> bool:
        connection = getattr(self.db, "connection", None)
        return bool(getattr(connection, "closed", False) or getattr(connection, "broken", False))

    def close(self) -> None:
        self._close_side()
        self.db.close()

    # -- transactions ------------------------------------------------------------------------

    def begin(self) -> None:
        if self.broken:
            self.reconnect()
        self._counts, self._spans, self._last_seen = {}, {}, {}
        self.db.begin()

    def commit(self) -> None:
        self._flush_spans()
        self._flush_counts()
        if self.db.dialect == "sqlite":
            self._flush_last_seen()  # one writer: no contention, and no second commit
        self.db.commit()
        if self.db.dialect == "sqlite":
            self._known_devices.update(self._last_seen)
        elif self._last_seen:
            # Only bookkeeping: its own short transaction, so no batch holds device rows while
            # it waits for its commit (workers would queue on the fleet's hot rows).
            self.db.begin()
            try:
                self._flush_last_seen()
                self.db.commit()
            except Exception:
                self.db.rollback()
                raise
            self._known_devices.update(self._last_seen)
        self._counts, self._spans, self._last_seen = {}, {}, {}

    def rollback(self) -> None:
        self._counts, self._spans, self._last_seen = {}, {}, {}
        if self.broken:
            return
        self.db.rollback()

    def savepoint(self) -> None:
        self._saved = (dict(self._counts), dict(self._spans), dict(self._last_seen))
        self.db.savepoint(_SAVEPOINT)

    def release(self) -> None:
        self.db.release(_SAVEPOINT)

    def rollback_to_savepoint(self) -> None:
        self.db.rollback_to(_SAVEPOINT)
        counts, spans, last_seen = self._saved
        self._counts, self._spans, self._last_seen = dict(counts), dict(spans), dict(last_seen)

    def _flush_spans(self) -> None:
        for deployment_id in sorted(self._spans):
            start, end = self._spans[deployment_id]
            self.db.execute(
                "UPDATE deployments SET deployment_start = least(deployment_start, ?), "
                "deployment_end = greatest(deployment_end, ?) "
                "WHERE deployment_id = ? AND (deployment_start > ? OR deployment_end < ?)",
                (start, end, deployment_id, start, end),
            )

    def _flush_counts(self) -> None:
        for name in sorted(self._counts):
            self.db.execute(
                "INSERT INTO counter_shards(name, shard, value) VALUES (?, ?, ?) "
                "ON CONFLICT(name, shard) DO UPDATE SET "
                "value = counter_shards.value + excluded.value",
                (name, self.shard, self._counts[name]),
            )

    def _flush_last_seen(self) -> None:
        # In device order, so two workers' marks never take the same rows in opposite orders.
        # A device's first appearance may be up to one batch late in ``first_seen``.
        for device_id in sorted(self._last_seen):
            at = self._last_seen[device_id]
            if device_id not in self._known_devices:
                self.db.execute(
                    "INSERT OR IGNORE INTO devices(device_id, first_seen, last_seen) "
                    "VALUES (?, ?, ?)",
                    (device_id, at, at),
                )
            self.db.execute(
                "UPDATE devices SET last_seen = ? WHERE device_id = ? AND last_seen < ?",
                (at, device_id, at),
            )

    # -- bookkeeping -------------------------------------------------------------------------

    def count(self, name: str, by: int = 1) -> None:
        self._counts[name] = self._counts.get(name, 0) + by

    def counters(self) -> dict[str, int]:
        rows = self.db.execute("SELECT name, sum(value) FROM counter_shards GROUP BY name")
        return {r[0]: int(r[1]) for r in rows}

    def reject(self, at: str, source: str, device_id: str | None, reason: str, detail: str) -> None:
        self.db.execute(
            "INSERT INTO rejections(at, source, device_id, reason, detail) VALUES (?,?,?,?,?)",
            (at, source, device_id, reason, detail[:1000]),
        )
        self.count(f"rejected.{reason}")

    def seen(self, device_id: str, at: str) -> None:
        """Mark the device seen; its row is written with the batch's commit (SQLite) or in a
        short transaction right after it (PostgreSQL: ``_flush_last_seen``)."""
        self._last_seen[device_id] = max(at, self._last_seen.get(device_id, at))

    def claim(self, device_id: str, item_id: str, type_: str, at: str) -> bool:
        """Record a whole item as received; False if it already was (by any worker).

        The unique key decides: of two workers holding the same item, the second waits for
        the first's commit and then finds the row, so exactly one stores it.
        """
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO received(device_id, item_id, type, received_at) "
            "VALUES (?,?,?,?)",
            (device_id, item_id, type_, at),
        )
        return cursor.rowcount == 1

    # -- messages ----------------------------------------------------------------------------

    def owner_conflict(self, meta: CaptureMeta) -> str | None:
        """Why ``meta`` may not be stored for its device (ids owned by another device), or None."""
        dep = self.db.execute(
            "SELECT camera_id FROM deployments WHERE deployment_id = ?", (meta.event.deployment_id,)
        ).fetchone()
        if dep is not None and dep["camera_id"] != meta.device_id:
            return f"deployment {meta.event.deployment_id} belongs to {dep['camera_id']}"
        ids = [m.media_id for m in meta.media]
        sql = "SELECT device_id FROM events WHERE event_id = ? AND device_id != ?"
        params: list[Any] = [meta.event.event_id, meta.device_id]
        if ids:  # one round trip for both checks: this runs for every capture
            marks = ",".join("?" * len(ids))
            sql += (
                " UNION ALL SELECT device_id FROM media"
                f" WHERE media_id IN ({marks}) AND device_id != ?"
            )
            params += [*ids, meta.device_id]
        owner = self.db.execute(sql + " LIMIT 1", params).fetchone()
        if owner is not None:
            return f"event or media ids already belong to {owner['device_id']}"
        return None

    def store_capture(self, meta: CaptureMeta, at: str) -> None:
        ev = meta.event
        end = (ev.event_end or ev.event_start).isoformat()
        start = ev.event_start.isoformat()
        self._ensure_deployment(ev.deployment_id, meta.device_id, start, end)
        # The span is widened at the commit, once per deployment (the module docstring).
        known = self._spans.get(ev.deployment_id)
        self._spans[ev.deployment_id] = (
            (min(known[0], start), max(known[1], end)) if known else (start, end)
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
        if not meta.observations:  # vision off, or nothing seen yet: skip the statement
            return
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
        self.db.execute(  # the status may be the device's first message
            "INSERT OR IGNORE INTO devices(device_id, first_seen, last_seen) VALUES (?, ?, ?)",
            (msg.device_id, at, at),
        )
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
                "deployment_start = least(deployment_start, ?), "
                "deployment_end = greatest(deployment_end, ?) "
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

    def media_row(self, media_id: str, *, lock: bool = False) -> Any:
        """The media row; ``lock`` holds it to the commit (PostgreSQL: ``FOR UPDATE``), so the
        chunks of one file, on different workers, are counted and assembled one at a time."""
        suffix = " FOR UPDATE" if lock and self.db.dialect == "postgresql" else ""
        return self.db.execute(
            f"SELECT * FROM media WHERE media_id = ?{suffix}", (media_id,)
        ).fetchone()

    def media_target(self, row: Any, kind: MediaKind) -> Path:
        """Relative path of a received file: ``<deployment>/[thumbnails/]<mediaID><ext>``."""
        if kind == "thumbnail":
            return Path(row["deployment_id"]) / "thumbnails" / f"{row['media_id']}.jpg"
        return (
            Path(row["deployment_id"]) / f"{row['media_id']}{extension_for(row['file_mediatype'])}"
        )

    def install_file(self, pieces: Iterable[bytes], relative: Path) -> None:
        """Write a received file into the media store; durable at the batch's ``flush``."""
        self.media.put(relative, pieces)

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

    # -- chunks of a file not yet whole (shared by every worker) ------------------------------

    @staticmethod
    def _chunk_key(chunk: MediaChunk) -> tuple[str, str, str, int, int]:
        return (chunk.media_id, chunk.kind, chunk.sha256, chunk.total_size, chunk.chunk_size)

    _CHUNK_SET = "media_id = ? AND kind = ? AND sha256 = ? AND total_size = ? AND chunk_size = ?"

    def put_chunk(self, chunk: MediaChunk, at: str) -> bool:
        """Keep one chunk until its file is whole; False if it was already held."""
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO partial_chunks(media_id, kind, sha256, total_size, "
            "chunk_size, idx, data, received_at) VALUES (?,?,?,?,?,?,?,?)",
            (*self._chunk_key(chunk), chunk.index, chunk.data, at),
        )
        return cursor.rowcount == 1

    def chunks_held(self, chunk: MediaChunk) -> int:
        row = self.db.execute(
            f"SELECT count(*) FROM partial_chunks WHERE {self._CHUNK_SET}", self._chunk_key(chunk)
        ).fetchone()
        return int(row[0])

    def chunk_pieces(self, chunk: MediaChunk) -> Iterator[bytes]:
        rows = self.db.execute(
            f"SELECT data FROM partial_chunks WHERE {self._CHUNK_SET} ORDER BY idx",
            self._chunk_key(chunk),
        )
        for row in rows:
            yield bytes(row[0])

    def discard_chunks(self, chunk: MediaChunk) -> None:
        self.db.execute(
            f"DELETE FROM partial_chunks WHERE {self._CHUNK_SET}", self._chunk_key(chunk)
        )

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
            "partial_chunks",
        }:
            raise ValueError(table)
        return [dict(r) for r in self.db.execute(f"SELECT * FROM {table}")]
