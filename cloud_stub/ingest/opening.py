"""How every cloud tool finds and opens the ingest store, and how its failures are said.

The store is ``<root>/ingest.sqlite`` unless a PostgreSQL URL is given: ``--db URL`` on the
command, or ``CAMTRAP_CLOUD_DB`` in the environment (docs/scale.md). ``<root>`` still holds
what is not in the database (local media, keys, the review page's users). Every failure
becomes a ``StoreError``: one line naming the file or the server, with its exit code.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

from cloud_stub.ingest.database import (
    Database,
    PostgresDatabase,
    SqliteDatabase,
    connect_postgres,
    is_postgres_url,
    redact,
)
from cloud_stub.media import MediaStorage, open_media
from device.contracts.errors import UserError, one_line
from device.contracts.exitcodes import Exit

DB_NAME = "ingest.sqlite"
DB_ENV = "CAMTRAP_CLOUD_DB"


class StoreError(UserError):
    """The ingest store is missing, unreadable, damaged, locked, read-only or unreachable."""


def store_path(root: Path) -> Path:
    return Path(root) / DB_NAME


def database_url(url: str | None = None) -> str | None:
    """The PostgreSQL URL to use: the one given, else ``CAMTRAP_CLOUD_DB``; None is SQLite."""
    chosen = url if url else os.environ.get(DB_ENV) or None
    if chosen and not is_postgres_url(chosen):
        raise StoreError(
            f"{DB_ENV if not url else '--db'}: {chosen!r} is not a postgresql:// URL",
            Exit.USAGE,
        )
    return chosen


def add_db_argument(parser: argparse.ArgumentParser) -> None:
    """``--db URL``: the PostgreSQL store, for every command that opens the ingest store."""
    parser.add_argument(
        "--db",
        metavar="URL",
        default=None,
        help=f"PostgreSQL store (postgresql://user@host:port/db); default ${DB_ENV}, "
        "else <root>/ingest.sqlite",
    )


def describe(root: Path, url: str | None = None) -> str:
    """Where the store is, for messages: the file, or the server without its password."""
    chosen = url if url else os.environ.get(DB_ENV) or None
    return redact(chosen) if chosen else str(store_path(root))


def make_dir(directory: Path, *, for_what: Path | None = None) -> None:
    """Create ``directory`` (and its parents), or say in one line why ``for_what`` cannot be."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot create {for_what or directory}: {exc.strerror or exc}", Exit.CANT_CREATE
        ) from exc


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


def postgres_error(where: str, exc: BaseException) -> StoreError:
    """The one line for a psycopg error, naming the server (never its password)."""
    import psycopg
    from psycopg import errors

    text = one_line(str(exc)) or type(exc).__name__
    if isinstance(exc, errors.UndefinedTable):
        return StoreError(
            f"no ingest tables in {where} (run camtrap-cloud ingest first): {text}", Exit.NO_INPUT
        )
    if isinstance(exc, errors.ReadOnlySqlTransaction):
        return StoreError(f"{where} is read-only here ({text})", Exit.STORE_READ_ONLY)
    if isinstance(exc, errors.InsufficientPrivilege):
        return StoreError(f"{where}: permission denied ({text})", Exit.STORE_UNREADABLE)
    if isinstance(exc, errors.LockNotAvailable | errors.DeadlockDetected):
        return StoreError(f"{where} is locked by another writer ({text})", Exit.STORE_LOCKED)
    if isinstance(exc, psycopg.OperationalError):
        return StoreError(f"cannot reach PostgreSQL at {where}: {text}", Exit.UNAVAILABLE)
    return StoreError(f"PostgreSQL at {where} failed: {text}", Exit.STORE_UNREADABLE)


def is_transient(exc: BaseException) -> bool:
    """A failure that a retry of the whole batch may cure: a lost PostgreSQL link, a deadlock
    between workers, an object store that cannot be reached."""
    from cloud_stub.media import MediaUnavailable

    if isinstance(exc, MediaUnavailable) and exc.code == Exit.UNAVAILABLE:
        return True
    try:
        import psycopg
        from psycopg import errors
    except ImportError:
        return False
    return isinstance(
        exc,
        psycopg.OperationalError
        | errors.DeadlockDetected
        | errors.SerializationFailure
        | errors.AdminShutdown
        | errors.CannotConnectNow,
    )


def _open_postgres(url: str, *, write: bool, check: bool, timeout: float) -> Database:
    import psycopg

    where = redact(url)
    try:
        db = PostgresDatabase(connect_postgres(url, read_only=not write, timeout_s=timeout), where)
        if check and not write and "version" not in db.columns("schema_migrations"):
            db.close()
            raise StoreError(
                f"no ingest store in {where} (run camtrap-cloud ingest first)", Exit.NO_INPUT
            )
    except psycopg.Error as exc:
        raise postgres_error(where, exc) from exc
    return db


def open_store_db(
    root: Path,
    *,
    write: bool = False,
    check: bool = True,
    timeout: float = 10.0,
    url: str | None = None,
) -> Database:
    """The one way every cloud tool opens the ingest store (raises ``StoreError``).

    PostgreSQL when ``url`` (or ``CAMTRAP_CLOUD_DB``) names a server; else
    ``<root>/ingest.sqlite``. Read-only (``write=False``: export, report, hand-off, the review
    page's reading side) opens SQLite with ``mode=ro``, plus ``immutable=1`` when the directory
    or file cannot be written (a read-only mount: WAL readers would need to create ``-shm``
    there), and PostgreSQL with read-only transactions. ``write=True`` (ingest) refuses a
    read-only store up front. ``check`` runs ``PRAGMA quick_check`` so a truncated or damaged
    file is named now, not as a traceback halfway through.
    """
    server = database_url(url)
    if server is not None:
        return _open_postgres(server, write=write, check=check, timeout=timeout)
    path = store_path(root)
    if not path.is_file():
        if write:
            make_dir(path.parent, for_what=path)
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
            connection = sqlite3.connect(
                path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
        else:
            uri = f"{path.absolute().as_uri()}?mode=ro" + ("&immutable=1" if frozen else "")
            connection = sqlite3.connect(
                uri, uri=True, timeout=timeout, isolation_level=None, check_same_thread=False
            )
        db = SqliteDatabase(connection, str(path))
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


def database_error(
    root: Path | None, exc: BaseException, url: str | None = None
) -> StoreError | None:
    """The ``StoreError`` for a database exception escaping a command, or None if it is not one."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, sqlite3.DatabaseError):
        return store_error(store_path(root) if root is not None else Path(DB_NAME), exc)
    try:
        import psycopg
    except ImportError:
        return None
    if isinstance(exc, psycopg.Error):
        return postgres_error(describe(root or Path("."), url), exc)
    return None


def guard_store(
    prog: str, run: Callable[[], int], root: Path | None = None, url: str | None = None
) -> int:
    """Run a command; a store problem becomes one line on stderr and its exit code.

    Any database error escaping ``run`` (a page that broke after the open) is said the same way.
    """
    try:
        return run()
    except Exception as exc:
        err = database_error(root, exc, url)
        if err is None:
            raise
        print(f"{prog}: {one_line(err.message)}", file=sys.stderr)
        return err.code


MEDIA_SETTING = "media"


def recorded_media(db: Database) -> str | None:
    """The media store the ingest recorded for this database (``local``, ``gs://...``)."""
    if "key" not in db.columns("store_settings"):
        return None  # a store from before settings were kept: its media are local
    row = db.execute("SELECT value FROM store_settings WHERE key = ?", (MEDIA_SETTING,)).fetchone()
    return str(row[0]) if row else None


def open_store_media(db: Database, root: Path) -> MediaStorage:
    """Where this store's media files are, as recorded by its ingest (default: local)."""
    return open_media(recorded_media(db), root)


def is_read_only(root: Path, url: str | None = None) -> bool:
    """True when the store cannot be written here (read-only mount, file or dir not writable)."""
    if database_url(url) is not None:
        return False
    path = store_path(root)
    if _read_only_fs(path.parent) or not os.access(path.parent, os.W_OK):
        return True
    return path.exists() and not os.access(path, os.W_OK)
