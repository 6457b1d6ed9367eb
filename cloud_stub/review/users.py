"""Accounts of the review page, kept in their own SQLite file next to the ingest database.

They are not Camtrap DP data, so they stay out of ``ingest.sqlite`` (and out of exports).
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cloud_stub.review.passwords import DUMMY_HASH, hash_password, verify_password

ROLES = ("viewer", "reviewer", "admin")  # each role can do everything the ones before it can
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD = 10

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username       TEXT PRIMARY KEY,
    password_hash  TEXT NOT NULL,
    role           TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    -- bumped on password or role change: sessions carrying an older value are void
    session_epoch  INTEGER NOT NULL DEFAULT 0
);
"""


class UserError(ValueError):
    pass


@dataclass(frozen=True)
class User:
    username: str
    role: str
    session_epoch: int

    def can(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


def users_path(root: Path) -> Path:
    return Path(root) / "review-users.sqlite"


class UserStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        with self._connect() as db:
            db.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=5.0)
        db.row_factory = sqlite3.Row
        return db

    def add(self, username: str, password: str, role: str) -> User:
        if not _NAME.match(username):
            raise UserError("user names are 1-64 of A-Z a-z 0-9 _ . @ -")
        _check(password, role)
        try:
            with self._connect() as db:
                db.execute(
                    "INSERT INTO users(username, password_hash, role, created_at) "
                    "VALUES (?, ?, ?, ?)",
                    (username, hash_password(password), role, datetime.now(UTC).isoformat()),
                )
        except sqlite3.IntegrityError:
            raise UserError(f"user {username!r} exists") from None
        return User(username, role, 0)

    def set_password(self, username: str, password: str) -> None:
        _check(password, "viewer")
        self._update(username, "password_hash = ?", hash_password(password))

    def set_role(self, username: str, role: str) -> None:
        _check(None, role)
        self._update(username, "role = ?", role)

    def _update(self, username: str, assignment: str, value: str) -> None:
        with self._connect() as db:
            cur = db.execute(
                f"UPDATE users SET {assignment}, session_epoch = session_epoch + 1 "
                "WHERE username = ?",
                (value, username),
            )
        if cur.rowcount == 0:
            raise UserError(f"no user {username!r}")

    def remove(self, username: str) -> None:
        with self._connect() as db:
            cur = db.execute("DELETE FROM users WHERE username = ?", (username,))
        if cur.rowcount == 0:
            raise UserError(f"no user {username!r}")

    def get(self, username: str) -> User | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT username, role, session_epoch FROM users WHERE username = ?", (username,)
            ).fetchone()
        return User(row["username"], row["role"], row["session_epoch"]) if row else None

    def list(self) -> list[User]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT username, role, session_epoch FROM users ORDER BY username"
            ).fetchall()
        return [User(r["username"], r["role"], r["session_epoch"]) for r in rows]

    def authenticate(self, username: str, password: str) -> User | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT username, role, session_epoch, password_hash FROM users WHERE username = ?",
                (username,),
            ).fetchone()
        if row is None:
            verify_password(password, DUMMY_HASH)
            return None
        if not verify_password(password, row["password_hash"]):
            return None
        return User(row["username"], row["role"], row["session_epoch"])


def _check(password: str | None, role: str) -> None:
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    if password is not None and len(password) < MIN_PASSWORD:
        raise UserError(f"passwords need at least {MIN_PASSWORD} characters")
