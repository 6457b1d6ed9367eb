"""What state the device store is in, told truthfully, for every command that reads it.

``inspect(data_dir)`` opens the database read-only (a read-only card and a copy without its
WAL files included, see ``db.open_readonly``), runs ``PRAGMA quick_check`` and counts. The
answer is one of:

- ``no_data_dir``: the data dir is not there (the card is not mounted) or is not a directory;
- ``empty``: the data dir is there, with no database and no media files, or a database that
  holds no captures;
- ``ok``: a readable database with captures;
- ``unreadable``, with a ``reason``: ``permission``, ``read_only`` (only when the command
  must write), ``not_a_database``, ``corrupt`` (``quick_check`` found a bad page), ``locked``,
  ``no_database`` (media files but no database), ``too_new`` (a newer camtrap's schema).

Every state but ``ok`` and ``empty`` maps to a non-zero exit code (``device.exitcodes``) and a
one-line message saying what is wrong and what to do.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from device.exitcodes import Exit
from device.store import events, files, media, outbox
from device.store.db import (
    ReadOnlyConnection,
    SchemaTooNew,
    WalUnreadable,
    dir_writable,
    open_readonly,
)
from device.store.imports import IMPORTED_DIR

DB_NAME = "camtrap.db"  # the same name as store.DB_NAME (store imports this module's users)
RECOVERY_KEY = "db_recovered"  # kv row: the last database recovery, as JSON


class StoreState(StrEnum):
    NO_DATA_DIR = "no_data_dir"
    EMPTY = "empty"
    OK = "ok"
    UNREADABLE = "unreadable"


# reason -> exit code, for the unreadable state
REASON_EXIT = {
    "permission": Exit.STORE_UNREADABLE,
    "not_a_database": Exit.STORE_UNREADABLE,
    "corrupt": Exit.STORE_UNREADABLE,
    "no_database": Exit.STORE_UNREADABLE,
    "locked": Exit.STORE_LOCKED,
    "read_only": Exit.STORE_READ_ONLY,
    "too_new": Exit.USAGE,
}

_ADVICE = {
    "permission": "run as root or as the camtrap user (sudo camtrap ...)",
    "not_a_database": (
        "copy the card before wiping it; starting the agent moves the damaged file aside and"
        " rebuilds the database from the JPEG files"
    ),
    "corrupt": (
        "copy the card before wiping it; starting the agent moves the damaged database aside"
        " and rebuilds it from the JPEG files"
    ),
    "no_database": (
        "start the agent once (it rebuilds the database from the files), or copy the card"
        " before wiping it"
    ),
    "locked": "another process holds the database; stop it (systemctl stop camtrap-agent)",
    "read_only": "remount the card read-write (or copy it off and work on the copy)",
    "too_new": "install the newer camtrap that wrote it",
}


@dataclass
class StoreHealth:
    state: StoreState
    data_dir: Path
    reason: str | None = None
    detail: str = ""
    writable: bool = False
    media_files: int = 0
    # How the database was read (db.ReadOnlyConnection.how) and what that leaves out.
    read_via: str | None = None
    wal_unread_bytes: int = 0
    recovery: dict[str, Any] | None = None
    counts: dict[str, Any] = field(default_factory=dict)

    @property
    def db_path(self) -> Path:
        return self.data_dir / DB_NAME

    @property
    def readable(self) -> bool:
        return self.state in (StoreState.OK, StoreState.EMPTY)

    @property
    def exit_code(self) -> int:
        if self.state is StoreState.NO_DATA_DIR:
            return int(Exit.NO_DATA_DIR)
        if self.state is StoreState.UNREADABLE:
            return int(REASON_EXIT.get(self.reason or "", Exit.STORE_UNREADABLE))
        return int(Exit.OK)

    def message(self) -> str:
        """One line: what is wrong, and what to do."""
        d = self.data_dir
        if self.state is StoreState.NO_DATA_DIR:
            if self.reason == "not_a_directory":
                return f"data dir {d} is not a directory: fix storage.data_dir in the config"
            return f"data dir {d} does not exist: is the card mounted?"
        if self.state is StoreState.UNREADABLE:
            if self.reason == "no_database":
                what = f"{d} holds {self.media_files} media file(s) but no {DB_NAME}"
            elif self.reason == "read_only" and self.detail.startswith("read-only media:"):
                what = f"store {self.db_path}: {self.detail}"
            elif self.reason == "read_only":
                what = f"data dir {d} is on read-only media and this command must write to it"
            else:
                label = (self.reason or "unreadable").replace("_", " ")
                what = f"store {self.db_path} is unreadable ({label}): {self.detail}"
            return f"{what}; {_ADVICE.get(self.reason or '', 'copy the card before wiping it')}"
        if self.state is StoreState.EMPTY:
            return f"data dir {d}: nothing was captured yet"
        return f"store {self.db_path} ok" + (f" ({self.detail})" if self.detail else "")

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "reason": self.reason,
            "detail": self.detail,
            "writable": self.writable,
            "media_files": self.media_files,
            "read_via": self.read_via,
            "wal_unread_bytes": self.wal_unread_bytes,
            "recovery": self.recovery,
            "exit_code": self.exit_code,
            "message": self.message(),
        }


def count_media_files(data_dir: Path) -> int:
    """The JPEGs the trap holds: its captures and the photos imported from cards."""
    total = 0
    for top in (files.MEDIA_DIR, IMPORTED_DIR):
        root = data_dir / top
        if root.is_dir():
            total += sum(1 for _ in root.rglob("*.jpg"))
    return total


def classify_error(exc: BaseException, db_path: Path) -> tuple[str, str]:
    """(reason, detail) for an exception met while opening or reading the database."""
    if isinstance(exc, SchemaTooNew):
        return "too_new", str(exc)
    if isinstance(exc, WalUnreadable):
        return "read_only", str(exc)
    if isinstance(exc, PermissionError):
        return "permission", str(exc)
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc)
    if name.startswith("SQLITE_NOTADB") or "not a database" in text:
        return "not_a_database", text
    if name.startswith("SQLITE_CORRUPT") or "malformed" in text:
        return "corrupt", text
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
        return "locked", text
    if name.startswith("SQLITE_READONLY"):
        return "read_only", text
    if not os.access(db_path, os.R_OK) or not os.access(db_path.parent, os.R_OK | os.X_OK):
        return "permission", f"{text} (no read permission on {db_path})"
    if isinstance(exc, sqlite3.OperationalError) and "no such table" in text:
        return "not_a_database", f"not a camtrap database: {text}"
    return "corrupt", text


def quick_check(conn: sqlite3.Connection, limit: int = 5) -> str | None:
    """None if ``PRAGMA quick_check`` passes, else its first findings in one line."""
    rows = [str(r[0]) for r in conn.execute(f"PRAGMA quick_check({int(limit)})").fetchall()]
    if rows == ["ok"]:
        return None
    return "; ".join(rows) or "quick_check returned nothing"


def inspect(
    data_dir: Path, *, need_write: bool = False, busy_timeout_s: float = 10.0
) -> StoreHealth:
    """The store's state (the database is opened read-only, checked, counted and closed)."""
    health, conn = inspect_open(data_dir, need_write=need_write, busy_timeout_s=busy_timeout_s)
    if conn is not None:
        conn.close()
    return health


def inspect_open(
    data_dir: Path, *, need_write: bool = False, busy_timeout_s: float = 10.0
) -> tuple[StoreHealth, ReadOnlyConnection | None]:
    """As ``inspect``, and the open read-only connection when the store is readable (None
    otherwise), for a caller that reads more; the caller closes it."""
    return _inspect(data_dir, need_write, busy_timeout_s)


def _inspect(
    data_dir: Path, need_write: bool, busy_timeout_s: float
) -> tuple[StoreHealth, ReadOnlyConnection | None]:
    h = StoreHealth(StoreState.UNREADABLE, data_dir)
    try:
        there = data_dir.exists()
    except OSError as exc:  # a parent we may not search
        h.reason, h.detail = "permission", f"cannot look into {data_dir.parent}: {exc.strerror}"
        return h, None
    if not there:
        h.state, h.reason = StoreState.NO_DATA_DIR, "missing"
        h.detail = f"{data_dir} does not exist"
        return h, None
    if not data_dir.is_dir():
        h.state, h.reason = StoreState.NO_DATA_DIR, "not_a_directory"
        h.detail = f"{data_dir} is a file, not a directory"
        return h, None
    if not os.access(data_dir, os.R_OK | os.X_OK):
        h.reason, h.detail = "permission", f"no permission to read {data_dir}"
        return h, None
    h.writable = dir_writable(data_dir)
    try:
        h.media_files = count_media_files(data_dir)
    except OSError as exc:
        h.reason, h.detail = "permission", f"cannot list {data_dir / files.MEDIA_DIR}: {exc}"
        return h, None
    if need_write and not h.writable:
        h.reason, h.detail = "read_only", f"{data_dir} cannot be written (read-only media)"
        return h, None
    db_path = data_dir / DB_NAME
    # No file, or a zero-byte one (SQLite's own view: a new, empty database): no captures
    # recorded, which is only true if no media files are there either.
    missing = None
    if not db_path.exists():
        missing = f"no {DB_NAME}"
    elif db_path.is_file() and db_path.stat().st_size == 0:
        missing = f"{DB_NAME} is empty (0 bytes)"
    if missing is not None:
        if h.media_files:
            h.reason, h.detail = "no_database", f"{h.media_files} media file(s) but {missing}"
        else:
            h.state, h.detail = StoreState.EMPTY, missing
        return h, None
    conn: ReadOnlyConnection | None = None
    try:
        conn = open_readonly(db_path, busy_timeout_s=busy_timeout_s)
        problem = quick_check(conn)
        if problem is not None:
            conn.close()
            h.reason, h.detail = "corrupt", f"quick_check: {problem}"
            return h, None
        h.counts = _counts(conn)
        h.recovery = _recovery(conn)
    except (sqlite3.Error, SchemaTooNew, OSError) as exc:
        if conn is not None:
            conn.close()
        h.reason, h.detail = classify_error(exc, db_path)
        return h, None
    h.read_via, h.wal_unread_bytes = conn.how, conn.wal_unread_bytes
    h.detail = conn.note or ""
    h.state = StoreState.OK if h.counts["events"] or h.counts["media"] else StoreState.EMPTY
    if h.state is StoreState.EMPTY and h.media_files:
        # Files the database does not know: the agent re-registers them at its next start.
        h.state = StoreState.OK
        h.detail = "; ".join(
            x for x in (h.detail, f"{h.media_files} media file(s) not yet registered") if x
        )
    return h, conn


def _counts(conn: sqlite3.Connection) -> dict[str, Any]:
    return {
        "events": events.count(conn),
        "media": media.count(conn),
        "outbox_pending": outbox.queued_count(conn),
    }


def _recovery(conn: sqlite3.Connection) -> dict[str, Any] | None:
    try:
        row = conn.execute("SELECT value FROM kv WHERE key = ?", (RECOVERY_KEY,)).fetchone()
    except sqlite3.OperationalError:  # no kv table before schema 2
        return None
    if row is None:
        return None
    try:
        value = json.loads(row[0])
    except ValueError:
        return {"raw": row[0]}
    return value if isinstance(value, dict) else {"value": value}
