"""The outbox: the device's only source of truth for what must still reach the cloud.

Rows live in the store's database (table ``outbox``), written in the same transaction as the
capture they describe. An item moves ``pending -> inflight -> done``; it is done only when the
cloud ingest acknowledged it end to end (an ``Ack`` with ``chunk="complete"``). Anything else
(a timeout, a dropped link, a crash) sends it back to ``pending`` with exponential backoff and
jitter. Chunked uploads remember how many leading chunks were acknowledged, so a resumed
upload starts there. An item that is not ready yet waits in a ``waiting_*`` state (see
``vocabulary``) and is claimed again once its time has passed.

Completing an item also stamps the row it describes (``events.uploaded_at``,
``media.uploaded_at``, ``media.thumb_uploaded_at``), in the same transaction: every later
question "was this uploaded?" reads those, so done rows can be pruned after
``storage.outbox_done_retention_days`` without losing a fact.

Priority classes (lower goes first): event metadata, thumbnails, full-resolution animal
media, blank media kept by ``keep``, then the frames of blank events held by ``defer``. A
claim can be capped at a priority (``max_priority``): the sync policy caps it on a metered
link so deferred blanks never go over one.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable, Iterable, Sized
from dataclasses import dataclass

from device.store.db import Source
from device.store.vocabulary import (
    CLAIMABLE_STATES,
    PRIORITY,
    QUEUED_STATES,
    ItemKind,
    OutboxState,
    Priority,
    item_id_for,
)

__all__ = [
    "PRIORITY",
    "Backoff",
    "MetadataGate",
    "Outbox",
    "OutboxItem",
    "QueueLine",
    "item_id_for",
]

_ITEM_COLUMNS = "item_id, kind, ref_id, priority, attempts, acked_chunks, chunk_size, bytes"
# Which row an item describes, and the column its acknowledgement stamps.
_UPLOADED = {
    ItemKind.METADATA: (
        "UPDATE events SET uploaded_at = COALESCE(uploaded_at, ?) WHERE event_id = ?"
    ),
    ItemKind.MEDIA: "UPDATE media SET uploaded_at = COALESCE(uploaded_at, ?) WHERE media_id = ?",
    ItemKind.THUMBNAIL: (
        "UPDATE media SET thumb_uploaded_at = COALESCE(thumb_uploaded_at, ?) WHERE media_id = ?"
    ),
}


@dataclass(frozen=True)
class OutboxItem:
    item_id: str
    kind: ItemKind
    ref_id: str
    priority: int
    attempts: int
    acked_chunks: int
    chunk_size: int | None
    bytes: int


@dataclass(frozen=True)
class MetadataGate:
    """What a thumbnail or frame waits for: its event's metadata reaching ingest first."""

    event_id: str
    metadata_uploaded: bool
    metadata_state: OutboxState | None  # its outbox row's state; None once pruned (or never)


@dataclass(frozen=True)
class QueueLine:
    """One line of a "what is left" report."""

    kind: ItemKind
    state: OutboxState
    items: int
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
    """The outbox table. ``clock`` is the wall clock (unix seconds) for due times and stamps."""

    def __init__(
        self,
        db: Source,
        backoff: Backoff | None = None,
        seed: int | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.backoff = backoff or Backoff()
        self.rng = random.Random(seed)
        self.clock = clock

    # -- queueing --------------------------------------------------------------------------

    @staticmethod
    def enqueue(
        conn: sqlite3.Connection,
        kind: ItemKind | str,
        ref_id: str,
        priority: int,
        size: int = 0,
        *,
        created_at: float | None = None,
    ) -> None:
        """Inside the caller's transaction, so the item exists iff what it points to does."""
        kind = ItemKind(kind)
        conn.execute(
            "INSERT OR IGNORE INTO outbox (item_id, kind, ref_id, priority, state, created_at,"
            " bytes) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                item_id_for(kind, ref_id),
                kind,
                ref_id,
                priority,
                OutboxState.PENDING,
                time.time() if created_at is None else created_at,
                size,
            ),
        )

    def recover_inflight(self) -> int:
        """After a restart nothing is in flight: whatever was is pending again."""
        with self.db.write() as conn:
            return conn.execute(
                "UPDATE outbox SET state = ? WHERE state = ?",
                (OutboxState.PENDING, OutboxState.INFLIGHT),
            ).rowcount

    def claim(
        self,
        limit: int,
        kinds: Iterable[str] | None = None,
        now: float | None = None,
        *,
        max_priority: int | None = None,
    ) -> list[OutboxItem]:
        """The next ``limit`` items due, most valuable first; they become ``inflight``.

        Pending and waiting items compete by priority and age alike. Each state is read in
        index order (``outbox_claim``) up to ``limit`` rows, so a claim costs the same with
        a hundred or a hundred thousand items queued. Items of a priority above
        ``max_priority`` (None: no cap) are left queued.
        """
        now = self.clock() if now is None else now
        kinds = tuple(ItemKind(k) for k in kinds) if kinds is not None else None
        where = "state = ? AND next_attempt_at <= ?"
        params: list[object] = []
        if kinds is not None:
            where += f" AND kind IN ({_marks(kinds)})"
            params += kinds
        if max_priority is not None:
            where += " AND priority <= ?"
            params.append(max_priority)
        with self.db.write() as conn:
            rows: list[sqlite3.Row] = []
            for state in CLAIMABLE_STATES:
                rows += conn.execute(
                    f"SELECT {_ITEM_COLUMNS}, created_at FROM outbox INDEXED BY outbox_claim"
                    f" WHERE {where} ORDER BY state, priority, created_at LIMIT ?",
                    (state, now, *params, limit),
                ).fetchall()
            rows.sort(key=lambda r: (r["priority"], r["created_at"]))
            rows = rows[:limit]
            conn.executemany(
                "UPDATE outbox SET state = ? WHERE item_id = ?",
                [(OutboxState.INFLIGHT, r["item_id"]) for r in rows],
            )
        return [_item(r) for r in rows]

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
        """Ingest holds these items: done, and their rows say since when (one transaction).

        Ids without a row (a heartbeat's, or an item already pruned) change nothing."""
        now = self.clock()
        with self.db.write() as conn:
            for item_id in item_ids:
                row = conn.execute(
                    "UPDATE outbox SET state = ?, done_at = ?, last_error = NULL"
                    " WHERE item_id = ? RETURNING kind, ref_id",
                    (OutboxState.DONE, now, item_id),
                ).fetchone()
                if row is not None:
                    conn.execute(_UPLOADED[ItemKind(row["kind"])], (now, row["ref_id"]))

    def retry_later(self, item_id: str, error: str, now: float | None = None) -> float:
        """Back to pending after a backoff; returns the delay chosen."""
        now = self.clock() if now is None else now
        with self.db.write() as conn:
            row = conn.execute(
                "SELECT attempts FROM outbox WHERE item_id = ?", (item_id,)
            ).fetchone()
            if row is None:
                return 0.0
            attempts = row["attempts"] + 1
            delay = self.backoff.delay(attempts, self.rng)
            conn.execute(
                "UPDATE outbox SET state = ?, attempts = ?, next_attempt_at = ?, last_error = ?"
                " WHERE item_id = ? AND state != ?",
                (
                    OutboxState.PENDING,
                    attempts,
                    now + delay,
                    error[:500],
                    item_id,
                    OutboxState.DONE,
                ),
            )
        return delay

    def release(self, item_ids: Iterable[str]) -> None:
        """Back to pending now, without counting an attempt (the link went away)."""
        with self.db.write() as conn:
            conn.executemany(
                "UPDATE outbox SET state = ? WHERE item_id = ? AND state = ?",
                [(OutboxState.PENDING, i, OutboxState.INFLIGHT) for i in item_ids],
            )

    def defer(self, item_ids: Iterable[str], delay_s: float, waiting: OutboxState) -> None:
        """Wait ``waiting`` for ``delay_s`` without counting an attempt: the item is not
        ready yet (its event is still being classified, its metadata not yet acknowledged)."""
        if waiting not in (OutboxState.WAITING_CLASSIFICATION, OutboxState.WAITING_METADATA):
            raise ValueError(f"{waiting!r} is not a waiting state")
        at = self.clock() + delay_s
        with self.db.write() as conn:
            conn.executemany(
                "UPDATE outbox SET state = ?, next_attempt_at = ? WHERE item_id = ? AND state = ?",
                [(waiting, at, i, OutboxState.INFLIGHT) for i in item_ids],
            )

    def due_now(self) -> int:
        """Every queued item may go at once (a technician asked for a sync)."""
        with self.db.write() as conn:
            return conn.execute(
                f"UPDATE outbox SET next_attempt_at = 0"
                f" WHERE state IN ({_marks(CLAIMABLE_STATES)}) AND next_attempt_at > 0",
                CLAIMABLE_STATES,
            ).rowcount

    def reset_chunks(self, item_id: str) -> None:
        """Ingest threw the assembled file away (``restart``): resend from chunk 0."""
        with self.db.write() as conn:
            conn.execute("UPDATE outbox SET acked_chunks = 0 WHERE item_id = ?", (item_id,))

    def dead(self, item_id: str, error: str) -> None:
        """Permanently undeliverable (e.g. its file was lost); kept, visibly, for a human."""
        with self.db.write() as conn:
            conn.execute(
                "UPDATE outbox SET state = ?, last_error = ? WHERE item_id = ?",
                (OutboxState.DEAD, error[:500], item_id),
            )

    def prune_done(self, older_than_s: float, now: float | None = None) -> int:
        """Delete done rows acknowledged more than ``older_than_s`` ago; returns how many.

        Safe because ``complete`` stamped the rows they describe: the drain's gate, retention
        and the reports read those stamps, never a done row."""
        cutoff = (self.clock() if now is None else now) - older_than_s
        with self.db.write() as conn:
            return conn.execute(
                "DELETE FROM outbox WHERE done_at < ? AND state = ?", (cutoff, OutboxState.DONE)
            ).rowcount

    # -- what the drain asks ---------------------------------------------------------------

    def metadata_gates(self, media_ids: list[str]) -> dict[str, MetadataGate]:
        """media id -> its event's metadata upload, for the thumbnails and frames about to go.

        A media id without a row is absent from the answer."""
        out: dict[str, MetadataGate] = {}
        with self.db.read() as conn:
            for start in range(0, len(media_ids), 500):
                part = media_ids[start : start + 500]
                rows = conn.execute(
                    "SELECT m.media_id, m.event_id, e.uploaded_at, o.state FROM media m"
                    " JOIN events e ON e.event_id = m.event_id"
                    " LEFT JOIN outbox o ON o.kind = ? AND o.ref_id = m.event_id"
                    f" WHERE m.media_id IN ({_marks(part)})",
                    (ItemKind.METADATA, *part),
                ).fetchall()
                for media_id, event_id, uploaded_at, state in rows:
                    out[media_id] = MetadataGate(
                        event_id,
                        uploaded_at is not None,
                        None if state is None else OutboxState(state),
                    )
        return out

    def next_due_at(
        self, kinds: Iterable[str] | None = None, *, max_priority: int | None = None
    ) -> float | None:
        """When the next item ``claim`` would take (same states, kinds and priority cap) is
        due (unix time), or None if none is queued: how long an idle drain may sleep."""
        where = f"state IN ({_marks(CLAIMABLE_STATES)})"
        params: list[object] = list(CLAIMABLE_STATES)
        if kinds is not None:
            kinds = tuple(ItemKind(k) for k in kinds)
            where += f" AND kind IN ({_marks(kinds)})"
            params += kinds
        if max_priority is not None:
            where += " AND priority <= ?"
            params.append(max_priority)
        with self.db.read() as conn:
            row = conn.execute(f"SELECT MIN(next_attempt_at) FROM outbox WHERE {where}", params)
            found = row.fetchone()[0]
        return None if found is None else float(found)

    def next_sendable_at(
        self, kinds: Iterable[str], *, max_priority: int | None = None
    ) -> float | None:
        """When the next queued item of ``kinds`` (at most ``max_priority``, as ``claim``
        takes it) that the drain alone can send is due (unix time), or None if there is none.

        Metadata waiting for classification, and the files of such an event, are not counted:
        only the agent classifies, so a ``camtrap sync`` without one must not wait for them.
        """
        kinds = tuple(ItemKind(k) for k in kinds)
        sendable = (OutboxState.PENDING, OutboxState.WAITING_METADATA)
        capped = "" if max_priority is None else " AND o.priority <= ?"
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT MIN(o.next_attempt_at) FROM outbox o"
                " LEFT JOIN media m ON o.kind != ? AND m.media_id = o.ref_id"
                " LEFT JOIN events e ON e.event_id = m.event_id"
                " LEFT JOIN outbox mo ON mo.kind = ? AND mo.ref_id = m.event_id"
                f" WHERE o.state IN ({_marks(sendable)}) AND o.kind IN ({_marks(kinds)})"
                f"{capped}"
                " AND (o.kind = ? OR e.uploaded_at IS NOT NULL"
                "      OR (mo.item_id IS NOT NULL AND mo.state != ?))",
                (
                    ItemKind.METADATA,
                    ItemKind.METADATA,
                    *sendable,
                    *kinds,
                    *(() if max_priority is None else (max_priority,)),
                    ItemKind.METADATA,
                    OutboxState.WAITING_CLASSIFICATION,
                ),
            ).fetchone()
        return None if row[0] is None else float(row[0])

    # -- reporting -------------------------------------------------------------------------

    def depth(self) -> dict[str, int]:
        """Queued items per class: metadata, thumbnail, media, blank_media, deferred_blank.

        By kind, not by priority: a test capture's media travel at the metadata priority but
        are still media. Media of blank events are told apart by the class their policy gave
        them (``keep``: blank_media, ``defer``: deferred_blank).
        """
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT CASE WHEN kind = ? AND priority = ? THEN 'blank_media'"
                " WHEN kind = ? AND priority = ? THEN 'deferred_blank' ELSE kind"
                f" END AS class, COUNT(*) FROM outbox WHERE state IN ({_marks(QUEUED_STATES)})"
                " GROUP BY class",
                (
                    ItemKind.MEDIA,
                    Priority.BLANK_MEDIA,
                    ItemKind.MEDIA,
                    Priority.DEFERRED_BLANK,
                    *QUEUED_STATES,
                ),
            ).fetchall()
        return {name: n for name, n in rows}

    def oldest_pending_age_s(self, now: float | None = None) -> float | None:
        """Seconds since the oldest queued item was queued, or None when nothing is."""
        now = self.clock() if now is None else now
        with self.db.read() as conn:
            oldest = conn.execute(
                f"SELECT MIN(created_at) FROM outbox WHERE state IN ({_marks(QUEUED_STATES)})",
                QUEUED_STATES,
            ).fetchone()[0]
        return None if oldest is None else max(0.0, now - oldest)

    def pending_bytes(self) -> int:
        """Bytes of every queued item."""
        return self.left()[1]

    def left(self) -> tuple[int, int]:
        """(items, bytes) still queued."""
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM outbox"
                f" WHERE state IN ({_marks(QUEUED_STATES)})",
                QUEUED_STATES,
            ).fetchone()
        return int(row[0]), int(row[1])

    def queued_by_kind(self) -> dict[ItemKind, tuple[int, int]]:
        """kind -> (items, bytes) still queued."""
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT kind, COUNT(*), COALESCE(SUM(bytes), 0) FROM outbox"
                f" WHERE state IN ({_marks(QUEUED_STATES)}) GROUP BY kind ORDER BY kind",
                QUEUED_STATES,
            ).fetchall()
        return {ItemKind(kind): (int(n), int(size)) for kind, n, size in rows}

    def breakdown(self) -> list[QueueLine]:
        """Queued and dead items per kind and state, for "what is left" reports."""
        states = (*QUEUED_STATES, OutboxState.DEAD)
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT kind, state, COUNT(*), COALESCE(SUM(bytes), 0) FROM outbox"
                f" WHERE state IN ({_marks(states)}) GROUP BY kind, state ORDER BY 1, 2",
                states,
            ).fetchall()
        return [QueueLine(ItemKind(k), OutboxState(s), int(n), int(b)) for k, s, n, b in rows]

    def dead_items(self, limit: int | None = None) -> list[tuple[str, str | None]]:
        """(item id, reason) of dead items, by id."""
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT item_id, last_error FROM outbox WHERE state = ? ORDER BY item_id LIMIT ?",
                (OutboxState.DEAD, -1 if limit is None else limit),
            ).fetchall()
        return [(item_id, error) for item_id, error in rows]


# -- inside the store's own transactions ---------------------------------------------------------


def reprioritise(conn: sqlite3.Connection, kind: ItemKind, ref_id: str, priority: int) -> None:
    """A queued item moves to another priority class.

    In flight included: a frame claimed a moment before its verdict is only being turned
    back by the metadata gate (its event's metadata waits for that verdict), and the drain
    never writes a priority back, so it returns to the queue in its new class."""
    conn.execute(
        f"UPDATE outbox SET priority = ? WHERE item_id = ? AND state IN ({_marks(QUEUED_STATES)})",
        (priority, item_id_for(kind, ref_id), *QUEUED_STATES),
    )


def drop_unsent(conn: sqlite3.Connection, kind: ItemKind, ref_id: str) -> None:
    """The item's file is gone by policy: no upload is owed, so no row stays either."""
    conn.execute(
        "DELETE FROM outbox WHERE item_id = ? AND state != ?",
        (item_id_for(kind, ref_id), OutboxState.DONE),
    )


def kill_unsent(conn: sqlite3.Connection, kind: ItemKind, ref_id: str, reason: str) -> None:
    """An upload that can no longer happen stays visible, with the reason, for a human."""
    conn.execute(
        "UPDATE outbox SET state = ?, last_error = ? WHERE item_id = ? AND state != ?",
        (OutboxState.DEAD, reason[:500], item_id_for(kind, ref_id), OutboxState.DONE),
    )


def queued_count(conn: sqlite3.Connection) -> int:
    return int(
        conn.execute(
            f"SELECT COUNT(*) FROM outbox WHERE state IN ({_marks(QUEUED_STATES)})", QUEUED_STATES
        ).fetchone()[0]
    )


def _item(row: sqlite3.Row) -> OutboxItem:
    return OutboxItem(
        item_id=row["item_id"],
        kind=ItemKind(row["kind"]),
        ref_id=row["ref_id"],
        priority=row["priority"],
        attempts=row["attempts"],
        acked_chunks=row["acked_chunks"],
        chunk_size=row["chunk_size"],
        bytes=row["bytes"],
    )


def _marks(values: Sized) -> str:
    return ",".join("?" * len(values))
