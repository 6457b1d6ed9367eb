"""The device's SQLite database: one writer connection per process, WAL, synchronous=FULL.

Every write goes through ``Database.write()`` (one lock, one connection) because Debian 12's
SQLite 3.40.1 has a WAL-reset corruption bug that needs two concurrent writers; readers in
other processes (``camtrap status``) open the file read-only (``open_readonly``).

This module owns the connections; the repositories beside it (``events``, ``media``,
``observations``, ``outbox``, ``kv``) own the SQL. Other rooms hold a ``Database`` or a
read-only connection only to hand it to a repository, and catch ``DatabaseError``, never
``sqlite3`` itself.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

from device.store.schema import MIGRATIONS, SCHEMA_VERSION

# What a store call raises when SQLite fails (damage, a lock held too long, a vanished file).
DatabaseError = sqlite3.Error


class Source(Protocol):
    """What a repository works through: the agent's ``Database``, or a read-only connection
    (whose ``write`` refuses, as SQLite would)."""

    def read(self) -> AbstractContextManager[sqlite3.Connection]: ...

    def write(self) -> AbstractContextManager[sqlite3.Connection]: ...


class SchemaTooNew(RuntimeError):
    """The database was written by a newer camtrap; this (older) one must not touch it."""


class WalUnreadable(sqlite3.OperationalError):
    """Read-only media, the data still in a WAL that cannot be read: copy the card first."""


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
        return schema_version(self)

    def close(self) -> None:
        with self.lock, suppress(sqlite3.Error):
            self.conn.close()


def schema_version(source: Source) -> int:
    """The migration the database at ``source`` is at."""
    with source.read() as conn:
        return int(conn.execute("SELECT version FROM schema_version").fetchone()[0])


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


class ReadOnlyConnection(sqlite3.Connection):
    """What ``open_readonly`` returns: a connection plus how it got at the file.

    ``how`` is ``direct`` (normal read-only open, the WAL included), ``immutable`` (read-only
    media, no WAL to read), ``copy`` (read-only media with a WAL but no ``-shm``: the database
    and its WAL were copied to a scratch dir, removed again on close) or ``immutable-no-wal``
    (as ``copy``, but the copy failed: what the WAL holds is not seen). ``note`` says it in
    words for reports, or is None for a plain open.
    """

    how: str = "direct"
    note: str | None = None
    wal_unread_bytes: int = 0
    scratch: Path | None = None

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """As ``Database.read``, so repositories read both the same way."""
        yield self

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        raise sqlite3.OperationalError("attempt to write a readonly database")
        yield self  # pragma: no cover (a generator, so the with statement gets the error)

    def close(self) -> None:
        super().close()
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None


def sidecar(path: Path, suffix: str) -> Path:
    """``camtrap.db-wal`` / ``camtrap.db-shm`` beside ``path``."""
    return path.with_name(path.name + suffix)


def dir_writable(directory: Path) -> bool:
    """Can this process create files in ``directory``? False on a read-only mount."""
    try:
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return False
    except OSError:
        return False
    return os.access(directory, os.W_OK | os.X_OK)


def _uri(path: Path, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"file:{quote(str(path.resolve()))}?{query}"


def _connect(uri: str, busy_timeout_s: float) -> ReadOnlyConnection:
    conn = sqlite3.connect(uri, uri=True, timeout=busy_timeout_s, factory=ReadOnlyConnection)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # opens the file now
    except BaseException:
        conn.close()
        raise
    return conn


def open_readonly(path: Path, *, busy_timeout_s: float = 10.0) -> ReadOnlyConnection:
    """A connection that cannot write and does not disturb the running agent.

    Works on a card mounted read-only and on a copy of the data dir without its WAL files.
    SQLite cannot open a WAL database read-only when the directory is not writable and the
    ``-shm`` file is missing; then the file is opened ``immutable`` (nothing can be writing
    to it), and a WAL holding data is read through a scratch copy, never silently skipped.
    """
    if not path.is_file():
        raise sqlite3.OperationalError(f"unable to open database file: {path} does not exist")
    wal, shm = sidecar(path, "-wal"), sidecar(path, "-shm")
    wal_bytes = wal.stat().st_size if wal.is_file() else 0
    writable = dir_writable(path.parent)
    if writable or (wal.is_file() and shm.is_file()):
        try:
            conn = _connect(_uri(path, mode="ro"), busy_timeout_s)
        except sqlite3.OperationalError:
            if writable:
                raise
        else:
            return _checked(conn, path)
    if wal_bytes == 0:
        conn = _connect(_uri(path, mode="ro", immutable="1"), busy_timeout_s)
        conn.how, conn.note = "immutable", "read-only media"
        return _checked(conn, path)
    try:
        scratch = Path(tempfile.mkdtemp(prefix="camtrap-ro-"))
    except OSError:
        scratch = None
    if scratch is not None:
        try:
            shutil.copyfile(path, scratch / path.name)
            shutil.copyfile(wal, sidecar(scratch / path.name, "-wal"))
            conn = _connect(_uri(scratch / path.name, mode="ro"), busy_timeout_s)
        except (OSError, sqlite3.Error):
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            conn.how, conn.scratch = "copy", scratch
            conn.note = f"read-only media; its {wal_bytes}-byte WAL was read from a scratch copy"
            return _checked(conn, path)
    note = f"read-only; {wal_bytes} bytes of WAL not readable: counts may be low"
    try:
        conn = _connect(_uri(path, mode="ro", immutable="1"), busy_timeout_s)
        conn.how, conn.wal_unread_bytes, conn.note = "immutable-no-wal", wal_bytes, note
        return _checked(conn, path)
    except sqlite3.OperationalError as exc:
        # Everything is still in the WAL (never checkpointed) and the WAL cannot be read.
        raise WalUnreadable(
            f"read-only media: {wal_bytes} bytes of WAL not readable (no scratch space to copy"
            f" it to) and {path.name} alone holds no camtrap data ({exc})"
        ) from exc


def _checked(conn: ReadOnlyConnection, path: Path) -> ReadOnlyConnection:
    try:
        version = conn.execute("SELECT version FROM schema_version").fetchone()[0]
    except BaseException:
        conn.close()
        raise
    if version > SCHEMA_VERSION:
        conn.close()
        raise SchemaTooNew(
            f"{path}: database schema version {version} is newer than this camtrap "
            f"understands ({SCHEMA_VERSION})"
        )
    return conn
