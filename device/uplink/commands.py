"""``camtrap sync``: upload everything queued now, showing progress, and say what is left.

The database has one writer. If no agent runs, ``sync`` takes the agent's run lock, drains
with the same ``Drain`` the agent uses, and lets go (an agent starting meanwhile waits). If an
agent runs, ``sync`` does not open the database for writing: it leaves a request file in the
data dir (the agent makes every queued item due now and deletes the file) and then watches
the outbox read-only until it is empty or the timeout passes.

Exit status: 0 when nothing is left to send, 1 when items are left (listed), 2 on a config
problem or when uploads are switched off; 10 no data dir (card not mounted), 11 store
unreadable, 12 store locked, 13 read-only media (see ``device.store.health``).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from device.config import Settings
from device.errors import UserError
from device.plugins import seconds
from device.runlock import SYNC_REQUEST, RunLock
from device.store.db import Database, open_readonly
from device.store.health import StoreHealth, StoreState, classify_error, inspect
from device.store.outbox import Outbox
from device.store.store import DB_NAME
from device.uplink.drain import WAITING_CLASSIFICATION

EXIT_LEFT = 1
# A day: a sync left running longer than that is forgotten, not patient.
MAX_SYNC_TIMEOUT_S = 86_400.0
EXIT_CONFIG = 2


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sync = sub.add_parser("sync", help="upload everything queued now, with progress")
    sync.add_argument(
        "--timeout",
        type=seconds(0.1, MAX_SYNC_TIMEOUT_S),
        default=600.0,
        help="give up after (seconds)",
    )
    sync.add_argument(
        "--all", action="store_true", help="ignore the metered-link policy and the byte budget"
    )
    sync.add_argument("--plain", action="store_true", help="progress as lines, not a bar")
    sync.set_defaults(func=cmd_sync)


def cmd_sync(args: argparse.Namespace, load: Callable[[], Settings]) -> int:
    settings = load()
    from device.logs import setup_logging

    setup_logging("WARNING", settings.log.format, sys.stderr)
    if settings.uplink.transport == "none":
        print("camtrap sync: uplink.transport is 'none'; nothing can be sent", file=sys.stderr)
        return EXIT_CONFIG
    data_dir = settings.storage.data_dir
    if not _store_to_sync(data_dir):
        print(f"camtrap sync: no database in {data_dir}; nothing was captured", file=sys.stderr)
        return 0
    bar = ProgressBar(sys.stdout, plain=args.plain or not sys.stdout.isatty())
    lock = RunLock(data_dir)
    if not lock.acquire(blocking=False):
        return _through_agent(settings, lock, args, bar)
    try:
        return _drain_here(settings, args, bar)
    finally:
        lock.release()


def _store_to_sync(data_dir: Path) -> bool:
    """True when there is a store to sync; False when nothing was ever captured (a data dir
    without a database and without media files). UserError for every other state: no data
    dir (card not mounted), read-only media (sync must mark items done), unreadable store."""
    health = inspect(data_dir, need_write=True)
    if health.state is StoreState.EMPTY and not health.db_path.exists():
        return False
    if not health.readable:
        raise UserError(health.message(), health.exit_code)
    return True


def _open_store(path: Path) -> Database:
    """The database for writing, or UserError naming the path and what to do."""
    try:
        return Database(path)
    except sqlite3.Error as exc:
        raise _unreadable(exc, path) from exc


def _read_store(path: Path) -> sqlite3.Connection:
    """The database read-only (works on read-only media too), or UserError."""
    try:
        return open_readonly(path)
    except sqlite3.Error as exc:
        raise _unreadable(exc, path) from exc


def _unreadable(exc: sqlite3.Error, path: Path) -> UserError:
    reason, detail = classify_error(exc, path)
    health = StoreHealth(StoreState.UNREADABLE, path.parent, reason=reason, detail=detail)
    return UserError(health.message(), health.exit_code)


# -- no agent running: drain in this process --------------------------------------------------


def _drain_here(settings: Settings, args: argparse.Namespace, bar: ProgressBar) -> int:
    from device.uplink.service import make_drain, make_transport

    db = _open_store(settings.storage.data_dir / DB_NAME)
    try:
        box = Outbox(db)
        box.recover_inflight()  # a crashed agent may have left items in flight
        box.due_now()
        start_items, start_bytes = _left(box)
        transport = make_transport(settings)
        drain = make_drain(settings, db, transport)
        drain.policy.override_all = args.all
        deadline = time.monotonic() + args.timeout
        try:
            while time.monotonic() < deadline:
                drain.step()
                p = drain.progress
                bar.show(
                    p.items_done,
                    start_items,
                    p.bytes_done,
                    start_bytes,
                    p.online,
                    f"offline: {p.offline_reason or 'cloud not reached yet'}; retrying",
                )
                if drain.idle() and not _due_soon(db, drain, deadline):
                    break
        finally:
            drain.close()
            transport.close()
        bar.done()
        code = _summary(box, drain.progress.items_done, drain.progress.bytes_done)
        offline = not drain.progress.online and drain.progress.offline_reason
        if offline:
            print(f"sync: offline: {drain.progress.offline_reason}")
        if code:
            why = f"offline: {drain.progress.offline_reason}" if offline else "not all sent"
            print(
                f"camtrap sync: items are left on the trap ({why}); run it again", file=sys.stderr
            )
        return code
    finally:
        db.close()


def _due_soon(db: Database, drain, deadline: float) -> bool:  # type: ignore[no-untyped-def]
    """Will anything the policy allows become due, and sendable, before we give up?

    Metadata of events still waiting for classification (and the files behind it) never
    becomes sendable in this process: only the agent classifies. Those do not keep us here.
    """
    kinds = drain.policy.kinds(drain.probe.link_type())
    marks = ",".join("?" * len(kinds))
    with db.read() as conn:
        row = conn.execute(
            "SELECT MIN(o.next_attempt_at) FROM outbox o"
            " LEFT JOIN media m ON o.kind != 'metadata' AND m.media_id = o.ref_id"
            " LEFT JOIN outbox mo ON mo.item_id = 'meta:' || m.event_id"
            f" WHERE o.state = 'pending' AND o.kind IN ({marks})"
            " AND COALESCE(o.last_error, '') != ?"
            " AND (o.kind = 'metadata' OR (mo.item_id IS NOT NULL"
            "      AND COALESCE(mo.last_error, '') != ?))",
            (*kinds, WAITING_CLASSIFICATION, WAITING_CLASSIFICATION),
        ).fetchone()
    if row[0] is None:
        return False
    return row[0] - time.time() < deadline - time.monotonic()


# -- an agent is running: ask it, then watch ---------------------------------------------------


def _through_agent(
    settings: Settings, lock: RunLock, args: argparse.Namespace, bar: ProgressBar
) -> int:
    data_dir = settings.storage.data_dir
    request = data_dir / SYNC_REQUEST
    request.write_text(json.dumps({"all": args.all, "at": time.time()}))
    print(
        f"camtrap sync: the agent (pid {lock.holder_pid()}) owns the database; asked it to"
        " sync now and watching its progress",
        file=sys.stderr,
    )
    deadline = time.monotonic() + args.timeout
    first_items = first_bytes = None
    while time.monotonic() < deadline:
        conn = _read_store(data_dir / DB_NAME)
        try:
            items, nbytes = _left_ro(conn)
        finally:
            conn.close()
        if first_items is None:
            first_items, first_bytes = items, nbytes
        assert first_bytes is not None
        picked_up = not request.exists()
        bar.show(
            first_items - items,
            first_items,
            first_bytes - nbytes,
            first_bytes,
            picked_up,
            "waiting for the agent to pick up the request",
        )
        if items == 0 and picked_up:
            break
        time.sleep(0.5)
    bar.done()
    if request.exists():
        print("camtrap sync: the agent did not pick up the request", file=sys.stderr)
    conn = _read_store(data_dir / DB_NAME)
    try:
        code = _summary_ro(conn)
    finally:
        conn.close()
    if code:
        print("camtrap sync: items are left on the trap; run it again", file=sys.stderr)
    return code


# -- reporting ---------------------------------------------------------------------------------


def _left(box: Outbox) -> tuple[int, int]:
    return sum(box.depth().values()), box.pending_bytes()


def _left_ro(conn) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    row = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM outbox"
        " WHERE state IN ('pending', 'inflight')"
    ).fetchone()
    return int(row[0]), int(row[1])


def _breakdown(conn) -> list[tuple[str, str, int, int]]:  # type: ignore[no-untyped-def]
    return [
        tuple(r)
        for r in conn.execute(
            "SELECT kind, state, COUNT(*), COALESCE(SUM(bytes), 0) FROM outbox"
            " WHERE state IN ('pending', 'inflight', 'dead') GROUP BY kind, state ORDER BY 1, 2"
        )
    ]


def _summary(box: Outbox, done_items: int, done_bytes: int) -> int:
    with box.db.read() as conn:
        return _report(conn, done_items, done_bytes)


def _summary_ro(conn) -> int:  # type: ignore[no-untyped-def]
    return _report(conn, None, None)


def _report(conn, done_items: int | None, done_bytes: int | None) -> int:  # type: ignore[no-untyped-def]
    rows = _breakdown(conn)
    left = sum(n for _, state, n, _ in rows if state != "dead")
    dead = sum(n for _, state, n, _ in rows if state == "dead")
    sent = f"sent {done_items} items ({_mb(done_bytes)}); " if done_items is not None else ""
    print(f"sync: {sent}left {left} items; undeliverable {dead}")
    for kind, state, n, nbytes in rows:
        print(f"  {kind:<10} {state:<9} {n:>7}  {_mb(nbytes)}")
    if dead:
        for item_id, error in conn.execute(
            "SELECT item_id, last_error FROM outbox WHERE state='dead' ORDER BY item_id LIMIT 5"
        ):
            print(f"  dead {item_id}: {error}")
    return 0 if left == 0 else EXIT_LEFT


def _mb(nbytes: int | None) -> str:
    return f"{(nbytes or 0) / 1e6:.1f} MB"


class ProgressBar:
    """Items, bytes, rate and ETA: a redrawn bar on a terminal, a line every 2 s otherwise."""

    WIDTH = 24

    def __init__(self, out: TextIO, plain: bool) -> None:
        self.out = out
        self.plain = plain
        self.started = time.monotonic()
        self._last = 0.0

    def show(
        self,
        items: int,
        total_items: int,
        nbytes: int,
        total_bytes: int,
        online: bool,
        why_not: str = "offline; retrying",
    ) -> None:
        """``why_not`` is shown while not ``online`` (it names the host and the reason)."""
        now = time.monotonic()
        if now - self._last < (2.0 if self.plain else 0.2):
            return
        self._last = now
        elapsed = max(1e-6, now - self.started)
        rate = nbytes / elapsed
        left = max(0, total_bytes - nbytes)
        eta = f"{int(left / rate)} s" if rate > 0 and left else "-"
        share = items / total_items if total_items else 1.0
        state = "" if online else f"  ({why_not})"
        text = (
            f"{items}/{total_items} items  {_mb(nbytes)}/{_mb(total_bytes)}"
            f"  {rate / 1e6:.2f} MB/s  ETA {eta}{state}"
        )
        if self.plain:
            print(f"sync progress: {text}", file=self.out, flush=True)
        else:
            filled = int(share * self.WIDTH)
            bar = "#" * filled + "." * (self.WIDTH - filled)
            self.out.write(f"\r[{bar}] {text}\x1b[K")
            self.out.flush()

    def done(self) -> None:
        if not self.plain:
            self.out.write("\n")
            self.out.flush()
