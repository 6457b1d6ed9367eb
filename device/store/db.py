"""The device's SQLite database: one writer connection per process, WAL, synchronous=FULL.

Every write goes through ``Database.write()`` (one lock, one connection) because Debian 12's
SQLite 3.40.1 has a WAL-reset corruption bug that needs two concurrent writers; readers in
other processes (``camtrap status``) open the file read-only.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from device.store.schema import MIGRATIONS, SCHEMA_VERSION


class SchemaTooNew(RuntimeError):
    """The database was written by a newer camtrap; this (older) one must not touch it."""


class Database:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.RLock()
        self.conn = sqlite3.connect(
            str(path), isolation_level=None, check_same_thread=False, timeout=10.0
        )
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL may roll back the last commits after power loss; captures must survive it.
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.conn.execute("PRAGMA busy_timeout=10000")
        self.inode = path.stat().st_ino
        self._migrate()

    def _migrate(self) -> None:
        with self.write() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            current = row[0] if row else 0
            if row is None:
                conn.execute("INSERT INTO schema_version (version) VALUES (0)")
        if current > SCHEMA_VERSION:
            self.conn.close()
            raise SchemaTooNew(
                f"{self.path}: database schema version {current} is newer than this camtrap "
                f"understands ({SCHEMA_VERSION}); refusing to run. Reinstall the newer camtrap "
                "or restore a backup from before the upgrade."
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            with self.write() as conn:
                for statement in _statements(MIGRATIONS[version - 1]):
                    conn.execute(statement)
                conn.execute("UPDATE schema_version SET version = ?", (version,))

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction; commits on success, rolls back on any exception."""
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            yield self.conn

    def still_in_place(self) -> bool:
        """False when the file under us vanished or was replaced (an unmounted card, say):
        SQLite would happily keep writing to the unlinked inode and lose everything."""
        try:
            return self.path.stat().st_ino == self.inode
        except OSError:
            return False

    def schema_version(self) -> int:
        with self.read() as conn:
            return int(conn.execute("SELECT version FROM schema_version").fetchone()[0])

    def close(self) -> None:
        with self.lock, suppress(sqlite3.Error):
            self.conn.close()


def _statements(script: str) -> list[str]:
    parts: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            parts.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        parts.append(buffer.strip())
    return parts


def open_readonly(path: Path) -> sqlite3.Connection:
    """A connection that cannot write and does not disturb the running agent."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout=10000")
    version = conn.execute("SELECT version FROM schema_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        conn.close()
        raise SchemaTooNew(
            f"{path}: database schema version {version} is newer than this camtrap "
            f"understands ({SCHEMA_VERSION})"
        )
    return conn
