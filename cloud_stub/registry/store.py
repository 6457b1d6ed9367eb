"""The registry's SQLite file (``<root>/registry.db``): tokens, enrolled devices, deployments.

Tokens are stored as SHA-256 hashes: a copy of the database does not hand out enrolments.
Deployments keep the Camtrap DP 1.0.2 field names as column names, so an export can select
them as they are.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DB_NAME = "registry.db"

# Camtrap DP deployment fields the registry keeps, in the standard's order.
DEPLOYMENT_FIELDS = (
    "deploymentID",
    "locationID",
    "locationName",
    "latitude",
    "longitude",
    "coordinateUncertainty",
    "deploymentStart",
    "deploymentEnd",
    "setupBy",
    "cameraID",
    "cameraModel",
    "cameraHeight",
    "cameraTilt",
    "cameraHeading",
    "baitUse",
    "featureType",
    "habitat",
    "deploymentComments",
)
# Not Camtrap DP deployment fields, but what geofencing and the fleet need.
EXTRA_FIELDS = ("countryCode", "admin1")

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS tokens (
    token_sha256  TEXT PRIMARY KEY,
    created_at    TEXT NOT NULL,
    used_at       TEXT,
    device_id     TEXT
);
CREATE TABLE IF NOT EXISTS devices (
    device_id     TEXT PRIMARY KEY,
    enrolled_at   TEXT NOT NULL,
    cert_serial   TEXT NOT NULL,
    cert_pem      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deployments (
    {", ".join(f'"{name}"' for name in (*DEPLOYMENT_FIELDS, *EXTRA_FIELDS))},
    device_id     TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY ("deploymentID")
);
"""


class TokenRefused(Exception):
    """The enrolment token is unknown or was used already."""


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class RegistryStore:
    """One connection per call: the HTTP server handles requests on several threads."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.path = root / DB_NAME
        with self._connect() as conn:
            conn.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            yield conn
        finally:
            conn.close()

    def new_tokens(self, count: int = 1) -> list[str]:
        tokens = [secrets.token_urlsafe(18) for _ in range(count)]
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO tokens (token_sha256, created_at) VALUES (?, ?)",
                [(token_hash(t), now_iso()) for t in tokens],
            )
            conn.execute("COMMIT")
        return tokens

    def enrol(self, token: str, device_id: str, sign: Any) -> str:
        """Spend ``token`` on ``device_id`` and return ``sign()``'s certificate, atomically.

        The token is spent only if signing succeeds, and two requests racing with one token
        cannot both win: the write lock is taken before the token is read.
        """
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(
                    "SELECT used_at FROM tokens WHERE token_sha256 = ?", (token_hash(token),)
                ).fetchone()
                if row is None:
                    raise TokenRefused("unknown enrolment token")
                if row["used_at"] is not None:
                    raise TokenRefused("enrolment token was already used")
                cert_pem, serial = sign()
                conn.execute(
                    "UPDATE tokens SET used_at = ?, device_id = ? WHERE token_sha256 = ?",
                    (now_iso(), device_id, token_hash(token)),
                )
                conn.execute(
                    "INSERT INTO devices (device_id, enrolled_at, cert_serial, cert_pem)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (device_id) DO UPDATE SET"
                    " enrolled_at = excluded.enrolled_at, cert_serial = excluded.cert_serial,"
                    " cert_pem = excluded.cert_pem",
                    (device_id, now_iso(), serial, cert_pem),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return cert_pem

    def put_deployment(self, device_id: str, record: dict[str, Any]) -> None:
        """Insert or replace one deployment (re-sending the same record is harmless)."""
        names = (*DEPLOYMENT_FIELDS, *EXTRA_FIELDS)
        values = [_column_value(record.get(name)) for name in names]
        columns = ", ".join(f'"{n}"' for n in names)
        marks = ", ".join("?" for _ in names)
        with self._connect() as conn:
            conn.execute(
                f"INSERT OR REPLACE INTO deployments ({columns}, device_id, updated_at)"
                f" VALUES ({marks}, ?, ?)",
                (*values, device_id, now_iso()),
            )

    def deployment_owner(self, deployment_id: str) -> str | None:
        with self._connect() as conn:
            row = conn.execute(
                'SELECT device_id FROM deployments WHERE "deploymentID" = ?', (deployment_id,)
            ).fetchone()
        return None if row is None else row["device_id"]

    def deployments(self, device_id: str | None = None) -> list[dict[str, Any]]:
        """Camtrap DP deployment rows (plus countryCode/admin1), oldest start first."""
        sql = "SELECT * FROM deployments"
        args: tuple[Any, ...] = ()
        if device_id is not None:
            sql += " WHERE device_id = ?"
            args = (device_id,)
        with self._connect() as conn:
            rows = conn.execute(sql + ' ORDER BY "deploymentStart"', args).fetchall()
        out = []
        for row in rows:
            record = {name: row[name] for name in (*DEPLOYMENT_FIELDS, *EXTRA_FIELDS)}
            if record["baitUse"] is not None:
                record["baitUse"] = bool(record["baitUse"])
            record["device_id"] = row["device_id"]
            out.append(record)
        return out

    def devices(self) -> list[dict[str, Any]]:
        with self._connect() as conn:
            rows = conn.execute("SELECT device_id, enrolled_at, cert_serial FROM devices")
            return [dict(r) for r in rows.fetchall()]


def _column_value(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value)
    return value


# Camtrap DP deployment field -> column of the ingest store's deployments table.
INGEST_COLUMNS = {
    "locationID": "location_id",
    "locationName": "location_name",
    "latitude": "latitude",
    "longitude": "longitude",
    "coordinateUncertainty": "coordinate_uncertainty",
    "deploymentStart": "deployment_start",
    "deploymentEnd": "deployment_end",
    "setupBy": "setup_by",
    "cameraModel": "camera_model",
    "cameraHeight": "camera_height",
    "cameraTilt": "camera_tilt",
    "cameraHeading": "camera_heading",
    "baitUse": "bait_use",
    "featureType": "feature_type",
    "habitat": "habitat",
    "deploymentComments": "deployment_comments",
}


def copy_deployments_to_ingest(registry_root: Path, ingest_root: Path) -> int:
    """Give the ingest store (which the export reads) provisioning's deployment records.

    Ingest alone knows a deployment's camera and time span; where and how the camera was set
    up comes from provisioning. Idempotent: re-running replaces the same fields.
    """
    from cloud_stub.ingest.store import IngestStore

    records = RegistryStore(registry_root).deployments()
    store = IngestStore(ingest_root)
    try:
        for record in records:
            fields = {
                column: record[name]
                for name, column in INGEST_COLUMNS.items()
                if record.get(name) is not None
            }
            if "bait_use" in fields:
                fields["bait_use"] = int(bool(fields["bait_use"]))
            store.record_deployment(
                record["deploymentID"], record["cameraID"] or record["device_id"], **fields
            )
    finally:
        store.close()
    return len(records)
