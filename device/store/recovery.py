"""A damaged database at start: move it aside (never delete it), start afresh, rebuild.

The JPEG files are the primary record: each carries its own description in EXIF (see
``exif``), so ``store.reconcile`` can re-register every capture in a fresh database and queue
it for upload again. The damaged file, with its ``-wal``/``-shm``, stays in the data dir as
``camtrap.db.corrupt-<UTC timestamp>`` for whoever wants to look at it (or salvage from it).
"""

from __future__ import annotations

import logging
import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from device.store import files
from device.store.db import sidecar
from device.store.health import classify_error, quick_check

log = logging.getLogger("camtrap.store")

CORRUPT_MARK = ".corrupt-"
DAMAGE_REASONS = ("corrupt", "not_a_database")


def damage(db_path: Path, busy_timeout_s: float = 10.0) -> str | None:
    """Why the database at ``db_path`` must be replaced, or None (healthy, or no file yet).

    Opened read-only, so a damaged file is moved aside exactly as it was found (a read-write
    close would checkpoint into it); a WAL left by a crash is read as the agent will read it
    (SQLite itself drops torn or garbage WAL frames by their checksums). A locked or
    unreadable file is not damage: that raises, and the store falls back loudly instead.
    """
    if not db_path.exists() or db_path.stat().st_size == 0:
        return None
    uri = f"file:{quote(str(db_path.resolve()))}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=busy_timeout_s, isolation_level=None)
        try:
            problem = quick_check(conn)
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        reason, detail = classify_error(exc, db_path)
        if reason in DAMAGE_REASONS:
            return f"{reason}: {detail}"
        raise
    return None if problem is None else f"corrupt: quick_check: {problem}"


def is_damage(exc: BaseException, db_path: Path) -> bool:
    return (
        isinstance(exc, sqlite3.DatabaseError)
        and not isinstance(exc, sqlite3.OperationalError)
        and classify_error(exc, db_path)[0] in DAMAGE_REASONS
    )


def move_aside(db_path: Path, now: datetime | None = None) -> Path:
    """Rename the database and its WAL/SHM to ``<name>.corrupt-<UTC stamp>[-wal|-shm]``."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    aside = db_path.with_name(f"{db_path.name}{CORRUPT_MARK}{stamp}")
    n = 1
    while any(sidecar(aside, s).exists() for s in ("", "-wal", "-shm")):
        aside = db_path.with_name(f"{db_path.name}{CORRUPT_MARK}{stamp}-{n}")
        n += 1
    for suffix in ("", "-wal", "-shm"):
        source = sidecar(db_path, suffix)
        if source.exists():
            os.replace(source, sidecar(aside, suffix))
    files.fsync_dir(db_path.parent)
    log.error("damaged database moved aside to %s (kept, never deleted)", aside)
    return aside


def aside_files(data_dir: Path) -> list[Path]:
    return sorted(
        p for p in data_dir.glob(f"*{CORRUPT_MARK}*") if not p.name.endswith(("-wal", "-shm"))
    )
