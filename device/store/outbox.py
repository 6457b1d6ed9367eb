"""The outbox: the device's only source of truth for what must still reach the cloud.

Rows live in the store's database (table ``outbox``), written in the same transaction as the
capture they describe. An item moves ``pending -> inflight -> done``; it is done only when the
cloud ingest acknowledged it end to end (an ``Ack`` with ``chunk="complete"``). Anything else
(a timeout, a dropped link, a crash) sends it back to ``pending`` with exponential backoff and
jitter. Chunked uploads remember how many leading chunks were acknowledged, so a resumed
upload starts there.

Priority classes (lower goes first): event metadata, thumbnails, full-resolution animal
media, then blank media.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass

from device.store.db import Database

PRIORITY = {"metadata": 0, "thumbnail": 1, "media": 2, "blank_media": 3}


@dataclass(frozen=True)
class OutboxItem:
    item_id: str
    kind: str  # metadata | thumbnail | media
    ref_id: str
    priority: int
    attempts: int
    acked_chunks: int
    chunk_size: int | None
    bytes: int


@dataclass(frozen=True)
class Backoff:
    base_s: float = 5.0
    cap_s: float = 3600.0
    jitter: float = 0.5  # +-50 %: traps that lost the link together must not retry together

    def delay(self, attempts: int, rng: random.Random) -> float:
        raw = min(self.cap_s, self.base_s * 2 ** max(0, attempts - 1))
        return raw * (1 + rng.uniform(-self.jitter, self.jitter))


class Outbox:
    def __init__(self, db: Database, backoff: Backoff | None = None, seed: int | None = None):
        self.db = db
        self.backoff = backoff or Backoff()
        self.rng = random.Random(seed)

    # -- queueing --------------------------------------------------------------------------

    @staticmethod
    def enqueue(
        conn: sqlite3.Connection, kind: str, ref_id: str, priority: int, size: int = 0
    ) -> None:
        """Inside the caller's transaction, so the item exists iff what it points to does."""
        conn.execute(
            "INSERT OR IGNORE INTO outbox (item_id, kind, ref_id, priority, created_at, bytes)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (item_id_for(kind, ref_id), kind, ref_id, priority, time.time(), size),
        )

    def recover_inflight(self) -> int:
        """After a restart nothing is in flight: whatever was is pending again."""
        with self.db.write() as conn:
            return conn.execute("UPDATE outbox SET state='pending' WHERE state='inflight'").rowcount

    def claim(
        self, limit: int, kinds: Iterable[str] | None = None, now: float | None = None
    ) -> list[OutboxItem]:
        """The next ``limit`` items due, most valuable first; they become ``inflight``."""
        now = time.time() if now is None else now
        kinds = tuple(kinds) if kinds is not None else None
        where = "state='pending' AND next_attempt_at <= ?"
        args: list[object] = [now]
        if kinds is not None:
            where += f" AND kind IN ({','.join('?' * len(kinds))})"
            args.extend(kinds)
        with self.db.write() as conn:
            rows = conn.execute(
                "SELECT item_id, kind, ref_id, priority, attempts, acked_chunks, chunk_size,"
                f" bytes FROM outbox INDEXED BY outbox_claim WHERE {where}"
                " ORDER BY state, priority, created_at LIMIT ?",
                (*args, limit),
            ).fetchall()
            conn.executemany(
                "UPDATE outbox SET state='inflight' WHERE item_id=?",
                [(r["item_id"],) for r in rows],
            )
        return [OutboxItem(**dict(r)) for r in rows]

    # -- outcomes --------------------------------------------------------------------------

    def set_chunking(self, item_id: str, chunk_size: int) -> None:
        """A new chunk size invalidates earlier chunk acks (their boundaries differ)."""
        with self.db.write() as conn:
            conn.execute(
                "UPDATE outbox SET acked_chunks = CASE WHEN chunk_size = ? THEN acked_chunks"
                " ELSE 0 END, chunk_size = ? WHERE item_id = ?",
                (chunk_size, chunk_size, item_id),
            )

    def ack_chunks(self, item_id: str, contiguous: int) -> None:
        """``contiguous`` leading chunks are stored at ingest; never moves backwards."""
        with self.db.write() as conn:
            conn.execute(
                "UPDATE outbox SET acked_chunks = MAX(acked_chunks, ?) WHERE item_id = ?",
                (contiguous, item_id),
            )

    def complete(self, item_ids: Iterable[str]) -> None:
        with self.db.write() as conn:
            conn.executemany(
                "UPDATE outbox SET state='done', done_at=?, last_error=NULL WHERE item_id=?",
                [(time.time(), i) for i in item_ids],
            )

    def retry_later(self, item_id: str, error: str, now: float | None = None) -> float:
        """Back to pending after a backoff; returns the delay chosen."""
        now = time.time() if now is None else now
        with self.db.write() as conn:
            row = conn.execute("SELECT attempts FROM outbox WHERE item_id=?", (item_id,)).fetchone()
            if row is None:
                return 0.0
            attempts = row["attempts"] + 1
            delay = self.backoff.delay(attempts, self.rng)
            conn.execute(
                "UPDATE outbox SET state='pending', attempts=?, next_attempt_at=?, last_error=?"
                " WHERE item_id=? AND state != 'done'",
                (attempts, now + delay, error[:500], item_id),
            )
        return delay

    def release(self, item_ids: Iterable[str]) -> None:
        """Back to pending now, without counting an attempt (the link went away)."""
        with self.db.write() as conn:
            conn.executemany(
                "UPDATE outbox SET state='pending' WHERE item_id=? AND state='inflight'",
                [(i,) for i in item_ids],
            )

    def defer(self, item_ids: Iterable[str], delay_s: float, reason: str) -> None:
        """Back to pending for ``delay_s`` without counting an attempt: the item is not ready
        yet (its event is still being classified, its metadata not yet acknowledged)."""
        at = time.time() + delay_s
        with self.db.write() as conn:
            conn.executemany(
                "UPDATE outbox SET state='pending', next_attempt_at=?, last_error=?"
                " WHERE item_id=? AND state='inflight'",
                [(at, reason[:500], i) for i in item_ids],
            )

    def due_now(self) -> int:
        """Every pending item may go at once (a technician asked for a sync)."""
        with self.db.write() as conn:
            return conn.execute(
                "UPDATE outbox SET next_attempt_at=0 WHERE state='pending' AND next_attempt_at>0"
            ).rowcount

    def reset_chunks(self, item_id: str) -> None:
        """Ingest threw the assembled file away (``restart``): resend from chunk 0."""
        with self.db.write() as conn:
            conn.execute("UPDATE outbox SET acked_chunks=0 WHERE item_id=?", (item_id,))

    def dead(self, item_id: str, error: str) -> None:
        """Permanently undeliverable (e.g. its file was lost); kept, visibly, for a human."""
        with self.db.write() as conn:
            conn.execute(
                "UPDATE outbox SET state='dead', last_error=? WHERE item_id=?",
                (error[:500], item_id),
            )

    def reprioritise(self, conn: sqlite3.Connection, kind: str, ref_id: str, priority: int) -> None:
        conn.execute(
            "UPDATE outbox SET priority=? WHERE item_id=? AND state='pending'",
            (priority, item_id_for(kind, ref_id)),
        )

    # -- reporting -------------------------------------------------------------------------

    def depth(self) -> dict[str, int]:
        """Pending + in-flight items per class: metadata, thumbnail, media, blank_media.

        By kind, not by priority: a test capture's media travel at the metadata priority but
        are still media.
        """
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT CASE WHEN kind = 'media' AND priority = ? THEN 'blank_media' ELSE kind"
                " END AS class, COUNT(*) FROM outbox WHERE state IN ('pending','inflight')"
                " GROUP BY class",
                (PRIORITY["blank_media"],),
            ).fetchall()
        return {name: n for name, n in rows}

    def oldest_pending_age_s(self, now: float | None = None) -> float | None:
        now = time.time() if now is None else now
        with self.db.read() as conn:
            oldest = conn.execute(
                "SELECT MIN(created_at) FROM outbox WHERE state IN ('pending','inflight')"
            ).fetchone()[0]
        return None if oldest is None else max(0.0, now - oldest)

    def pending_bytes(self) -> int:
        with self.db.read() as conn:
            return int(
                conn.execute(
                    "SELECT COALESCE(SUM(bytes), 0) FROM outbox"
                    " WHERE state IN ('pending','inflight')"
                ).fetchone()[0]
            )


def item_id_for(kind: str, ref_id: str) -> str:
    prefix = {"metadata": "meta", "thumbnail": "thumb", "media": "media"}[kind]
    return f"{prefix}:{ref_id}"
