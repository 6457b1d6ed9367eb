"""The ``counters`` and ``kv`` tables: small facts that outlive a restart.

Counters count what reconciliation and recovery found (``parts_deleted``, ...); ``kv`` holds
named values other rooms keep (the uplink's byte budget and last sync, the last recovery).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping

from device.store.db import Source


class KeyValues:
    def __init__(self, source: Source) -> None:
        self.source = source

    def get(self, key: str) -> str | None:
        return self.get_many([key]).get(key)

    def get_many(self, keys: Iterable[str]) -> dict[str, str]:
        keys = list(keys)
        with self.source.read() as conn:
            rows = conn.execute(
                f"SELECT key, value FROM kv WHERE key IN ({','.join('?' * len(keys))})", keys
            ).fetchall()
        return {key: value for key, value in rows}

    def put(self, key: str, value: str) -> None:
        self.put_many({key: value})

    def put_many(self, values: Mapping[str, str]) -> None:
        """All in one transaction."""
        with self.source.write() as conn:
            for key, value in values.items():
                put(conn, key, value)


class Counters:
    def __init__(self, source: Source) -> None:
        self.source = source

    def all(self) -> dict[str, int]:
        with self.source.read() as conn:
            return {name: int(v) for name, v in conn.execute("SELECT name, value FROM counters")}


# -- inside the store's own transactions ---------------------------------------------------------


def put(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO kv (key, value) VALUES (?, ?)"
        " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def bump_counter(conn: sqlite3.Connection, name: str, by: int = 1) -> None:
    conn.execute(
        "INSERT INTO counters (name, value) VALUES (?, ?)"
        " ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
        (name, by),
    )
