"""``camtrap sync``: upload everything queued now, showing progress, and say what is left.

The database has one writer. If no agent runs, ``sync`` takes the agent's run lock, drains
with the same ``Drain`` the agent uses, and lets go (an agent starting meanwhile waits). If an
agent runs, ``sync`` does not open the database for writing: it leaves a request file in the
data dir (the agent makes every queued item due now and deletes the file) and then watches
the outbox read-only until it is empty or the timeout passes.

``--json`` prints the outcome as one JSON object on stdout (progress goes to stderr): what was
sent, what is left per kind and state, the dead items with their reasons, and every capture
with what of it ingest acknowledged (``captures``), so another program (the demo) can compare
the trap with the cloud without reading the database itself.

Exit status: 0 when nothing is left to send, 1 when items are left (listed), 2 on a config
problem or when uploads are switched off; 10 no data dir (card not mounted), 11 store
unreadable, 12 store locked, 13 read-only media (see ``device.store.health``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from device.config import Settings
from device.errors import UserError
from device.plugins import seconds
from device.progress import ProgressLine
from device.runlock import SYNC_REQUEST, RunLock
from device.store.db import Database, DatabaseError, ReadOnlyConnection, Source, open_readonly
from device.store.events import Events
from device.store.health import StoreHealth, StoreState, classify_error, inspect
from device.store.media import Media
from device.store.outbox import Outbox, QueueLine
from device.store.store import DB_NAME
from device.store.vocabulary import OutboxState
from device.uplink.drain import Drain

EXIT_LEFT = 1
# A day: a sync left running longer than that is forgotten, not patient.
MAX_SYNC_TIMEOUT_S = 86_400.0
EXIT_CONFIG = 2
DEAD_SHOWN = 5  # dead items listed in the text report (the JSON lists them all)


def register(sub: argparse._SubParsersAction) -> None:
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
    sync.add_argument(
        "--json",
        action="store_true",
        help="the outcome as one JSON object on stdout, with every capture's upload state",
    )
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
        if args.json:
            print(json.dumps(SyncReport.nothing().as_json()))
        return 0
    # With --json stdout carries the one JSON object; everything for people goes to stderr.
    human = sys.stderr if args.json else sys.stdout
    bar = ProgressBar(human, plain=args.plain or args.json or not human.isatty())
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
    except DatabaseError as exc:
        raise _unreadable(exc, path) from exc


def _read_store(path: Path) -> ReadOnlyConnection:
    """The database read-only (works on read-only media too), or UserError."""
    try:
        return open_readonly(path)
    except DatabaseError as exc:
        raise _unreadable(exc, path) from exc


def _unreadable(exc: DatabaseError, path: Path) -> UserError:
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
        start_items, start_bytes = box.left()
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
                if drain.idle() and not _due_soon(box, drain, deadline):
                    break
        finally:
            drain.close()
            transport.close()
        bar.done()
        offline = drain.progress.offline_reason if not drain.progress.online else None
        report = SyncReport.read(db, drain.progress.items_done, drain.progress.bytes_done, offline)
        return _tell(report, args, bar.out)
    finally:
        db.close()


def _due_soon(box: Outbox, drain: Drain, deadline: float) -> bool:
    """Will anything the policy allows become due, and sendable, before we give up?

    Metadata of events still waiting for classification (and the files behind it) never
    becomes sendable in this process: only the agent classifies. Those do not keep us here.
    """
    # Deferred blanks are never sendable on a metered link: they must not keep us waiting.
    allowed = drain.policy.allowance(drain.probe.link_type())
    due_at = box.next_sendable_at(allowed.kinds, max_priority=allowed.max_priority)
    if due_at is None:
        return False
    return due_at - time.time() < deadline - time.monotonic()


# -- an agent is running: ask it, then watch ---------------------------------------------------


def _wake_agent(pid: int | None) -> None:
    """The agent sleeps until it has work: SIGUSR1 makes it read the request now. Only a
    ``camtrap run`` gets it (the signal's default action ends a process that does not expect
    it); without the right to signal (another user) the agent finds the request at its next
    look (``service.CLOSED_POLL_S`` at most)."""
    if not pid:
        return
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return
    if b"run" not in argv:
        return
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGUSR1)


def _through_agent(
    settings: Settings, lock: RunLock, args: argparse.Namespace, bar: ProgressBar
) -> int:
    data_dir = settings.storage.data_dir
    request = data_dir / SYNC_REQUEST
    request.write_text(json.dumps({"all": args.all, "at": time.time()}))
    _wake_agent(lock.holder_pid())
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
            items, nbytes = Outbox(conn).left()
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
        report = SyncReport.read(conn, None, None, None)
    finally:
        conn.close()
    return _tell(report, args, bar.out, agent=True)


# -- reporting ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncReport:
    """What a sync leaves behind, read from the store once the sending stopped."""

    sent_items: int | None  # None: an agent did the sending, this process only watched
    sent_bytes: int | None
    queue: list[QueueLine]
    dead: list[tuple[str, str | None]]
    captures: dict[str, list[dict[str, Any]]]
    offline_reason: str | None

    @classmethod
    def read(
        cls,
        source: Source,
        sent_items: int | None,
        sent_bytes: int | None,
        offline_reason: str | None,
    ) -> SyncReport:
        box = Outbox(source)
        return cls(
            sent_items,
            sent_bytes,
            box.breakdown(),
            box.dead_items(),
            _captures(source),
            offline_reason,
        )

    @classmethod
    def nothing(cls) -> SyncReport:
        """No database and no media files: nothing was ever captured."""
        return cls(0, 0, [], [], {"events": [], "media": []}, None)

    @property
    def left(self) -> int:
        return sum(line.items for line in self.queue if line.state is not OutboxState.DEAD)

    @property
    def left_bytes(self) -> int:
        return sum(line.bytes for line in self.queue if line.state is not OutboxState.DEAD)

    @property
    def exit_code(self) -> int:
        return 0 if self.left == 0 else EXIT_LEFT

    def text(self) -> list[str]:
        dead = sum(line.items for line in self.queue if line.state is OutboxState.DEAD)
        sent = (
            f"sent {self.sent_items} items ({_mb(self.sent_bytes)}); "
            if self.sent_items is not None
            else ""
        )
        lines = [f"sync: {sent}left {self.left} items; undeliverable {dead}"]
        for q in self.queue:
            lines.append(f"  {q.kind:<10} {q.state:<9} {q.items:>7}  {_mb(q.bytes)}")
        for item_id, error in self.dead[:DEAD_SHOWN]:
            lines.append(f"  dead {item_id}: {error}")
        if self.offline_reason:
            lines.append(f"sync: offline: {self.offline_reason}")
        return lines

    def as_json(self) -> dict[str, Any]:
        sent = None if self.sent_items is None else {"items": self.sent_items}
        if sent is not None:
            sent["bytes"] = self.sent_bytes or 0
        return {
            "sent": sent,
            "left": {"items": self.left, "bytes": self.left_bytes},
            "undeliverable": len(self.dead),
            "queue": [
                {"kind": q.kind, "state": q.state, "items": q.items, "bytes": q.bytes}
                for q in self.queue
            ],
            "dead": [{"item_id": i, "error": e} for i, e in self.dead],
            "offline_reason": self.offline_reason,
            "captures": self.captures,
            "exit_code": self.exit_code,
        }


def _captures(source: Source) -> dict[str, list[dict[str, Any]]]:
    """Every event and frame, and what of each ingest acknowledged."""
    return {
        "events": [
            {"event_id": e.event_id, "metadata_uploaded": e.uploaded_at is not None}
            for e in Events(source).uploads()
        ],
        "media": [
            {
                "media_id": m.media_id,
                "event_id": m.event_id,
                "state": m.state,
                "sha256": m.sha256,
                "thumb_sha256": m.thumb_sha256,
                "uploaded": m.uploaded,
                "thumbnail_uploaded": m.thumbnail_uploaded,
                "upload_queued": m.upload_queued,
            }
            for m in Media(source).uploads()
        ],
    }


def _tell(report: SyncReport, args: argparse.Namespace, human: TextIO, agent: bool = False) -> int:
    """The report (text, or JSON on stdout) and, when items are left, one line saying so."""
    if args.json:
        print(json.dumps(report.as_json()))
    else:
        for line in report.text():
            print(line, file=human)
    if report.exit_code:
        if agent:
            why = ""
        elif report.offline_reason:
            why = f" (offline: {report.offline_reason})"
        else:
            why = " (not all sent)"
        print(f"camtrap sync: items are left on the trap{why}; run it again", file=sys.stderr)
    return report.exit_code


def _mb(nbytes: int | None) -> str:
    return f"{(nbytes or 0) / 1e6:.1f} MB"


class ProgressBar:
    """Items, bytes, rate and ETA (``device.progress`` draws it)."""

    def __init__(self, out: TextIO, plain: bool) -> None:
        self.out = out
        self.line = ProgressLine(out, plain, "sync progress")

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
        if not self.line.due():
            return
        rate = nbytes / self.line.elapsed()
        left = max(0, total_bytes - nbytes)
        eta = f"{int(left / rate)} s" if rate > 0 and left else "-"
        share = items / total_items if total_items else 1.0
        state = "" if online else f"  ({why_not})"
        text = (
            f"{items}/{total_items} items  {_mb(nbytes)}/{_mb(total_bytes)}"
            f"  {rate / 1e6:.2f} MB/s  ETA {eta}{state}"
        )
        self.line.draw(share, text)

    def done(self) -> None:
        self.line.done()
