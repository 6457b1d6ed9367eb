"""The one door to the ingest database, SQLite (the embedded default) or PostgreSQL.

Everything that reads or writes the ingest store (ingest, review page, export, report, hand-off,
training) holds a ``Database``. Queries are written once, in the subset both engines speak:
``?`` placeholders, ``INSERT OR IGNORE``, ``least()``/``greatest()``, ``instr()``, and DDL with
SQLite's type names. ``PostgresDatabase`` rewrites that subset (``%s``, ``ON CONFLICT DO
NOTHING``, ``strpos``, ``DOUBLE PRECISION``/``BIGINT``/``BYTEA``/identity keys); SQLite gets
``least``/``greatest`` as functions with PostgreSQL's meaning (NULLs are ignored). Rows answer
both ``row["name"]`` and ``row[0]``, and ``dict(row)``, on both engines.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from typing import Any, Protocol

Params = Sequence[Any]


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Database(Protocol):
    """What every user of the ingest store may do with its connection."""

    dialect: str  # "sqlite" | "postgresql"
    where: str  # the file or the server, for error messages (never a password)

    def execute(self, sql: str, params: Params = ()) -> Cursor: ...

    def executemany(self, sql: str, rows: Iterable[Params]) -> None: ...

    def begin(self) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def savepoint(self, name: str) -> None: ...

    def release(self, name: str) -> None: ...

    def rollback_to(self, name: str) -> None: ...

    @property
    def in_transaction(self) -> bool: ...

    def columns(self, table: str) -> set[str]: ...

    def close(self) -> None: ...


# -- SQLite ----------------------------------------------------------------------------------


def _least(*values: Any) -> Any:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def _greatest(*values: Any) -> Any:
    present = [v for v in values if v is not None]
    return max(present) if present else None


class SqliteDatabase:
    dialect = "sqlite"

    def __init__(self, connection: sqlite3.Connection, where: str) -> None:
        connection.row_factory = sqlite3.Row
        connection.create_function("least", -1, _least, deterministic=True)
        connection.create_function("greatest", -1, _greatest, deterministic=True)
        self.connection = connection
        self.where = where

    def execute(self, sql: str, params: Params = ()) -> Cursor:
        return self.connection.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        self.connection.executemany(sql, rows)

    def begin(self) -> None:
        # IMMEDIATE: take the write lock now, so a second writer waits here (busy timeout)
        # instead of failing at its first write with a stale snapshot.
        self.connection.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.connection.execute("COMMIT")

    def rollback(self) -> None:
        if self.connection.in_transaction:
            self.connection.execute("ROLLBACK")

    def savepoint(self, name: str) -> None:
        self.connection.execute(f"SAVEPOINT {name}")

    def release(self, name: str) -> None:
        self.connection.execute(f"RELEASE {name}")

    def rollback_to(self, name: str) -> None:
        self.connection.execute(f"ROLLBACK TO {name}")
        self.connection.execute(f"RELEASE {name}")

    @property
    def in_transaction(self) -> bool:
        return self.connection.in_transaction

    def columns(self, table: str) -> set[str]:
        return {row[1] for row in self.connection.execute(f"PRAGMA table_info({table})")}

    def close(self) -> None:
        self.connection.close()


# -- PostgreSQL ------------------------------------------------------------------------------


class Row:
    """A PostgreSQL row that reads like ``sqlite3.Row``: by position, by name, and ``dict()``."""

    __slots__ = ("_index", "_values")

    def __init__(self, index: dict[str, int], values: Sequence[Any]) -> None:
        self._index = index
        self._values = tuple(values)

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            return self._values[self._index[key]]
        return self._values[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def keys(self) -> list[str]:
        return list(self._index)

    def __repr__(self) -> str:
        return f"Row({dict(zip(self._index, self._values, strict=True))!r})"


def _row_factory(cursor: Any) -> Any:
    names = [column.name for column in cursor.description or ()]
    index = {name: i for i, name in enumerate(names)}

    def make(values: Sequence[Any]) -> Row:
        return Row(index, values)

    return make


_QUOTED_OR_MARK = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\?|%")
_INSERT_OR_IGNORE = re.compile(r"^\s*INSERT\s+OR\s+IGNORE\s+INTO\b", re.IGNORECASE)
_INSTR = re.compile(r"\binstr\s*\(", re.IGNORECASE)
_DDL_TYPES = [
    (
        re.compile(r"\bINTEGER\s+PRIMARY\s+KEY\b", re.IGNORECASE),
        "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    ),
    (re.compile(r"\bREAL\b", re.IGNORECASE), "DOUBLE PRECISION"),
    (re.compile(r"\bINTEGER\b", re.IGNORECASE), "BIGINT"),
    (re.compile(r"\bBLOB\b", re.IGNORECASE), "BYTEA"),
]
_DDL = re.compile(r"^\s*(CREATE|ALTER)\s+TABLE\b", re.IGNORECASE)


def _marks(match: re.Match[str]) -> str:
    text = match.group(0)
    if text == "?":
        return "%s"
    if text == "%":
        return "%%"
    # psycopg reads placeholders inside literals too: only their percent signs change.
    return text.replace("%", "%%")


@lru_cache(maxsize=1024)
def to_postgres(sql: str) -> str:
    """The project's portable SQL in PostgreSQL's own words (see the module docstring)."""
    if _DDL.match(sql):
        for pattern, replacement in _DDL_TYPES:
            sql = pattern.sub(replacement, sql)
    ignore = bool(_INSERT_OR_IGNORE.match(sql))
    if ignore:
        sql = _INSERT_OR_IGNORE.sub("INSERT INTO", sql, count=1)
    sql = _INSTR.sub("strpos(", sql)
    sql = _QUOTED_OR_MARK.sub(_marks, sql)
    if ignore and "on conflict" not in sql.lower():
        sql = sql.rstrip().rstrip(";") + " ON CONFLICT DO NOTHING"
    return sql


def _adapt(params: Params) -> tuple[Any, ...]:
    # The schema keeps flags as INTEGER 0/1 on both engines (SQLite has no booleans).
    return tuple(int(p) if isinstance(p, bool) else p for p in params)


class PostgresDatabase:
    dialect = "postgresql"

    def __init__(self, connection: Any, where: str) -> None:
        self.connection = connection  # psycopg.Connection, autocommit: we say BEGIN ourselves
        self.where = where

    def execute(self, sql: str, params: Params = ()) -> Cursor:
        cursor: Cursor = self.connection.execute(to_postgres(sql), _adapt(params))
        return cursor

    def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        with self.connection.cursor() as cursor:
            cursor.executemany(to_postgres(sql), [_adapt(r) for r in rows])

    def begin(self) -> None:
        self.connection.execute("BEGIN")

    def commit(self) -> None:
        self.connection.execute("COMMIT")

    def rollback(self) -> None:
        if self.in_transaction:
            self.connection.execute("ROLLBACK")

    def savepoint(self, name: str) -> None:
        self.connection.execute(f"SAVEPOINT {name}")

    def release(self, name: str) -> None:
        self.connection.execute(f"RELEASE SAVEPOINT {name}")

    def rollback_to(self, name: str) -> None:
        self.connection.execute(f"ROLLBACK TO SAVEPOINT {name}")
        self.connection.execute(f"RELEASE SAVEPOINT {name}")

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        status = self.connection.info.transaction_status
        return bool(status in (TransactionStatus.INTRANS, TransactionStatus.INERROR))

    def columns(self, table: str) -> set[str]:
        rows = self.connection.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = %s",
            (table,),
        ).fetchall()
        return {r[0] for r in rows}

    def close(self) -> None:
        self.connection.close()


def connect_postgres(url: str, *, read_only: bool = False, timeout_s: float = 10.0) -> Any:
    """A psycopg connection in autocommit mode with ``Row`` rows (raises psycopg errors)."""
    import psycopg

    connection = psycopg.connect(
        url, autocommit=True, connect_timeout=max(1, int(timeout_s)), row_factory=_row_factory
    )
    if read_only:
        connection.execute("SET default_transaction_read_only = on")
    return connection


def redact(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    return re.sub(r"(//[^:/@]+):[^@]*@", r"\1:***@", url)


def is_postgres_url(url: str | None) -> bool:
    return bool(url) and str(url).startswith(("postgresql://", "postgres://"))
