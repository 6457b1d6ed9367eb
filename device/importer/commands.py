"""``camtrap import PATH``: a trail camera's card (or any folder of JPEGs) into the store.

Each photo is copied into the store byte for byte, grouped into events, classified, queued
and sent like a capture of the trap's own (docs/trail-cameras.md). The card is never written.

The database has one writer. With no agent running, the import runs here (under the agent's
run lock) and classifies what it stored; with an agent running, it is handed to the agent
(``requests``) and watched read-only. ``--dry-run`` reads the card and prints the events it
would make, writing nothing.

Exit status: 0 every photo imported or already held; 1 done, but some files were not
imported (each is listed with its reason); 2 a bad argument or config; 10-13 the store (no
data dir, unreadable, locked, read-only); 65 a reference photo that cannot be used; 66 PATH
does not exist; 73 the trap's disk is full (run it again once there is room); 74 the card went
away mid-import (insert it and run it again: it resumes with no duplicates).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from device.config import Settings
from device.contracts.protocol import CameraInfo, Ident
from device.errors import UserError
from device.exitcodes import Exit
from device.importer.engine import Importer, ImportOutcome, ImportRefused, ImportRequest
from device.importer.room import REFUSED_SUFFIX
from device.progress import ProgressLine
from device.runlock import RunLock
from device.store.db import DatabaseError, open_readonly
from device.store.health import inspect, inspect_open
from device.store.imports import ImportProgress, ImportRecord, Imports
from device.store.store import DB_NAME, MediaStore, free_bytes
from device.store.vocabulary import ImportState

# How long a request may wait for the running agent to take it before we say so.
PICKUP_TIMEOUT_S = 60.0
FAILURES_SHOWN = 20
EVENTS_SHOWN = 50

EXIT_OF_STATE = {
    ImportState.INTERRUPTED: Exit.IO_ERROR,
    ImportState.DISK_FULL: Exit.CANT_CREATE,
}


def register(sub: argparse._SubParsersAction) -> None:
    cmd = sub.add_parser(
        "import", help="import a trail camera's card or a folder of photos (docs/trail-cameras.md)"
    )
    cmd.add_argument("path", type=Path, help="a mounted card, its DCIM folder, or any folder")
    cmd.add_argument("--dry-run", action="store_true", help="print the events; write nothing")
    cmd.add_argument(
        "--deployment", default=None, help="Camtrap DP deploymentID (default: the trap's own)"
    )
    cmd.add_argument("--camera", default=None, help="a name for the camera, e.g. its tag number")
    clock = cmd.add_mutually_exclusive_group()
    clock.add_argument(
        "--clock-offset",
        default=None,
        metavar="±HH:MM:SS",
        help="add this to every photo's time (-00:04:30: the camera is 4 min 30 s fast)",
    )
    clock.add_argument(
        "--reference",
        default=None,
        metavar="PHOTO=TIME",
        help="a photo of a phone's clock and the time it showed (ISO 8601)",
    )
    cmd.add_argument("--no-classify", action="store_true", help="leave classification to the agent")
    cmd.add_argument("--plain", action="store_true", help="progress as lines, not a bar")
    cmd.add_argument("--json", action="store_true", help="the outcome as one JSON object")
    cmd.set_defaults(func=cmd_import)


def cmd_import(args: argparse.Namespace, load: Callable[[], Settings]) -> int:
    settings = load()
    from device.logs import setup_logging

    setup_logging("WARNING", settings.log.format, sys.stderr)
    request = _request(args, settings)
    human = sys.stderr if args.json else sys.stdout
    bar = Progress(human, plain=args.plain or args.json or not human.isatty())
    if args.dry_run:
        outcome = _dry_run(settings, request, bar)
        return _tell(outcome, None, args, human)
    data_dir = settings.storage.data_dir
    health = inspect(data_dir, need_write=True)
    if not health.readable:
        raise UserError(health.message(), health.exit_code)
    lock = RunLock(data_dir)
    if not lock.acquire(blocking=False):
        return _through_agent(settings, request, lock, args, bar, human)
    try:
        outcome, classified = _import_here(settings, request, bar, classify=not args.no_classify)
    finally:
        lock.release()
    return _tell(outcome, classified, args, human)


def _request(args: argparse.Namespace, settings: Settings) -> ImportRequest:
    path: Path = args.path
    if not path.exists():
        raise UserError(f"{path}: no such card or folder", Exit.NO_INPUT)
    if not path.is_dir():
        raise UserError(
            f"{path}: not a folder; give the card's mount point or a folder of JPEGs",
            Exit.NO_INPUT,
        )
    deployment = args.deployment if args.deployment is not None else settings.device.deployment_id
    if not deployment:
        raise UserError(
            "--deployment: this trap has no deployment (device.deployment_id is empty); give"
            " --deployment ID",
            Exit.USAGE,
        )
    _check_wire(deployment, args.camera)
    return ImportRequest(
        source=path.resolve(),
        deployment_id=deployment,
        camera=args.camera,
        clock_offset=args.clock_offset,
        reference=args.reference,
    )


def _check_wire(deployment: str, camera: str | None) -> None:
    """The names must travel: checked here against the wire schema, not at upload time."""
    from pydantic import TypeAdapter, ValidationError

    try:
        TypeAdapter(Ident).validate_python(deployment)
    except ValidationError as exc:
        raise UserError(
            f"--deployment {deployment!r}: letters, digits and _.:@- only, 1-128 characters",
            Exit.USAGE,
        ) from exc
    if camera is not None:
        try:
            CameraInfo(name=camera)
        except ValidationError as exc:
            raise UserError(f"--camera {camera!r}: at most 64 characters", Exit.USAGE) from exc


# -- a dry run: read, group, write nothing ----------------------------------------------------


def _dry_run(settings: Settings, request: ImportRequest, bar: Progress) -> ImportOutcome:
    data_dir = settings.storage.data_dir
    # The same read-only opening as `camtrap status` (it leaves no file behind on a card).
    health, conn = inspect_open(data_dir)
    if not health.readable:
        # What is already held cannot be told: say so rather than call everything new.
        raise UserError(
            f"{health.message()}; a dry run cannot tell what is already imported",
            health.exit_code,
        )
    try:
        known = Imports(conn).known_photos if conn is not None else None
        importer = Importer(settings, None, known=known, on_progress=bar.show)
        try:
            return importer.run(request, dry_run=True)
        except ImportRefused as exc:
            raise UserError(str(exc), Exit.DATA_ERROR) from exc
        except DatabaseError as exc:
            raise UserError(
                f"{data_dir / DB_NAME}: cannot read the store ({exc})", Exit.STORE_UNREADABLE
            ) from exc
    finally:
        bar.done()
        if conn is not None:
            conn.close()


# -- no agent running: import here --------------------------------------------------------------


def _import_here(
    settings: Settings, request: ImportRequest, bar: Progress, *, classify: bool
) -> tuple[ImportOutcome, dict[str, int] | None]:
    store = MediaStore(settings)
    store.open()
    try:
        if store.db is None:
            raise UserError(
                f"data dir {settings.storage.data_dir} is unusable: {store.last_error}",
                Exit.STORE_UNREADABLE,
            )
        data_dir = settings.storage.data_dir
        importer = Importer(
            settings,
            store,
            free_bytes=lambda: free_bytes(data_dir),
            on_progress=bar.show,
        )
        try:
            outcome = importer.run(request)
        except ImportRefused as exc:
            raise UserError(str(exc), Exit.DATA_ERROR) from exc
        finally:
            bar.done()
        classified = None
        if classify and settings.vision.enabled and outcome.closed_events:
            from device.importer.classify import classify_events

            print(f"classifying {len(outcome.closed_events)} events ...", file=bar.out)
            classified = classify_events(settings, store, outcome.closed_events)
        return outcome, classified
    finally:
        store.close()


# -- an agent is running: hand it the import, then watch ---------------------------------------


def _through_agent(
    settings: Settings,
    request: ImportRequest,
    lock: RunLock,
    args: argparse.Namespace,
    bar: Progress,
    human: TextIO,
) -> int:
    import uuid
    from dataclasses import replace

    from device.importer.requests import write_request

    data_dir = settings.storage.data_dir
    request = replace(request, import_id=str(uuid.uuid4()), requested_by="command")
    path = write_request(data_dir, request)
    print(
        f"camtrap import: the agent (pid {lock.holder_pid()}) owns the database; asked it to"
        " import and watching its progress (Ctrl-C stops watching, not the import)",
        file=sys.stderr,
    )
    assert request.import_id is not None
    asked = time.monotonic()
    record: ImportRecord | None = None
    refusal = path.with_suffix(REFUSED_SUFFIX)
    while True:
        gone = _agent_gone(lock)  # asked first: an agent that ends well has written its row
        record = _read_record(data_dir, request.import_id)
        if record is None and refusal.exists():
            bar.done()
            reason = refusal.read_text(errors="replace").strip()
            refusal.unlink(missing_ok=True)
            raise UserError(reason, Exit.DATA_ERROR)
        if record is not None:
            bar.show(record.progress, record.files_total)
            if record.state is not ImportState.RUNNING:
                break
        if gone:
            # It died (a crash, a power cut, SIGKILL) without ending the import: its row says
            # running until the next start marks it interrupted. Nobody runs a request left now.
            path.unlink(missing_ok=True)
            bar.done()
            raise UserError(
                "the agent stopped before it finished the import; start it again"
                " (systemctl start camtrap-agent) and run camtrap import again: it resumes"
                " with no duplicates",
                Exit.IO_ERROR,
            )
        waited = time.monotonic() - asked
        if record is None and path.exists() and waited > PICKUP_TIMEOUT_S:
            bar.done()
            raise UserError(
                f"the agent did not take the import request {path} within"
                f" {PICKUP_TIMEOUT_S:.0f} s; is it stuck? (journalctl -u camtrap-agent)",
                Exit.NOT_DONE,
            )
        if record is None and not path.exists() and not refusal.exists() and waited > 30.0:
            # Taken but never begun, and no reason left: the agent's log says why.
            bar.done()
            raise UserError(
                "the agent took the import request but did not start it; see its log"
                " (journalctl -u camtrap-agent)",
                Exit.NOT_DONE,
            )
        time.sleep(0.5)
    bar.done()
    return _tell_record(record, _read_failures(data_dir, request.import_id), args, human)


def _agent_gone(lock: RunLock) -> bool:
    """Has the agent that held the run lock let go of it (ended, or died)?"""
    if lock.acquire(blocking=False):
        lock.release()
        return True
    return False


def _read_record(data_dir: Path, import_id: str) -> ImportRecord | None:
    try:
        conn = open_readonly(data_dir / DB_NAME)
    except DatabaseError as exc:
        raise UserError(
            f"{data_dir / DB_NAME}: cannot read the store ({exc})", Exit.STORE_UNREADABLE
        ) from exc
    try:
        return Imports(conn).get(import_id)
    finally:
        conn.close()


def _read_failures(data_dir: Path, import_id: str) -> list[dict[str, Any]]:
    conn = open_readonly(data_dir / DB_NAME)
    try:
        return [
            {"path": f.source_path, "kind": f.kind.value, "reason": f.reason, "kept": f.kept_path}
            for f in Imports(conn).failures(import_id)
        ]
    finally:
        conn.close()


# -- telling the user ---------------------------------------------------------------------------


def _tell(
    outcome: ImportOutcome, classified: dict[str, int] | None, args: argparse.Namespace, out: TextIO
) -> int:
    failures = [
        {"path": f.source_path, "kind": f.kind.value, "reason": f.reason, "kept": f.kept_path}
        for f in outcome.failures
    ]
    code = _exit_code(outcome.state, failures)
    if args.json:
        print(json.dumps(_as_json(outcome, failures, classified, args.dry_run), indent=2))
        return code
    if args.dry_run:
        _print_plan(outcome, out)
    else:
        print(f"camtrap import {args.path}: {outcome.message}", file=out)
    _print_failures(failures, out)
    if classified is not None:
        words = ", ".join(f"{n} {kind}" for kind, n in sorted(classified.items()) if n)
        print(f"classified: {words or 'nothing'}", file=out)
    if outcome.state in EXIT_OF_STATE:
        print(f"camtrap import: {outcome.message}", file=sys.stderr)
    return code


def _tell_record(
    record: ImportRecord, failures: list[dict[str, Any]], args: argparse.Namespace, out: TextIO
) -> int:
    code = _exit_code(record.state, failures)
    if args.json:
        print(json.dumps({**record.as_dict(), "failures": failures}, indent=2))
        return code
    print(f"camtrap import {args.path}: {record.message}", file=out)
    _print_failures(failures, out)
    if record.state in EXIT_OF_STATE:
        print(f"camtrap import: {record.message}", file=sys.stderr)
    return code


def _exit_code(state: ImportState | None, failures: list[dict[str, Any]]) -> int:
    if state in EXIT_OF_STATE:
        return int(EXIT_OF_STATE[state])
    return int(Exit.NOT_DONE) if failures else int(Exit.OK)


def _print_plan(outcome: ImportOutcome, out: TextIO) -> None:
    total = sum(len(e.photos) for e in outcome.events)
    print(
        f"would import {total} photos in {len(outcome.events)} events"
        f" ({len(outcome.duplicates)} already held, {outcome.progress.failed} not importable,"
        f" {outcome.progress.not_images} not photos, {outcome.skipped} hidden/system files"
        f" left out; clock: {outcome.clock.clock_source}"
        + (f" {outcome.clock.offset_s:+.0f} s" if outcome.clock.method else "")
        + ")",
        file=out,
    )
    for number, event in enumerate(outcome.events[:EVENTS_SHOWN], 1):
        camera = " ".join(x for x in (event.camera.make, event.camera.model) if x) or "camera?"
        print(
            f"  event {number}: {len(event.photos)} photos  {event.start.isoformat()}"
            f"  {camera}  {event.capture_method} (by {event.grouped_by})",
            file=out,
        )
        for photo in event.photos:
            print(f"      {photo.rel}  {photo.taken_at.isoformat()}", file=out)
    if len(outcome.events) > EVENTS_SHOWN:
        print(f"  ... and {len(outcome.events) - EVENTS_SHOWN} more events", file=out)


def _print_failures(failures: list[dict[str, Any]], out: TextIO) -> None:
    for f in failures[:FAILURES_SHOWN]:
        kept = f"; a copy is kept as {f['kept']}" if f.get("kept") else ""
        print(f"  not imported: {f['path']}: {f['reason']}{kept}", file=out)
    if len(failures) > FAILURES_SHOWN:
        print(f"  ... and {len(failures) - FAILURES_SHOWN} more (--json lists all)", file=out)


def _as_json(
    outcome: ImportOutcome,
    failures: list[dict[str, Any]],
    classified: dict[str, int] | None,
    dry_run: bool,
) -> dict[str, Any]:
    return {
        "import_id": outcome.import_id,
        "dry_run": dry_run,
        "state": outcome.state.value if outcome.state else None,
        "message": outcome.message,
        "files_total": outcome.files_total,
        "skipped": outcome.skipped,
        **outcome.progress.as_dict(),
        "clock": {
            "source": outcome.clock.clock_source,
            "offset_s": outcome.clock.offset_s,
            "reference": outcome.clock.reference,
        },
        "planned_events": [
            {
                "photos": [p.rel for p in e.photos],
                "start": e.start.isoformat(),
                "end": e.end.isoformat(),
                "capture_method": e.capture_method,
                "grouped_by": e.grouped_by,
                "camera": e.camera.as_dict(None),
            }
            for e in outcome.events
        ],
        "event_ids": outcome.closed_events,
        "duplicate_paths": outcome.duplicates,
        "failures": failures,
        "classified": classified,
    }


class Progress:
    """Files read of the card (``device.progress`` draws it)."""

    def __init__(self, out: TextIO, plain: bool) -> None:
        self.out = out
        self.line = ProgressLine(out, plain, "import progress")

    def show(self, progress: ImportProgress, total: int) -> None:
        if not self.line.due(force=progress.files_done >= total):
            return
        rate = progress.files_done / self.line.elapsed()
        text = (
            f"{progress.files_done}/{total} files  {progress.imported} new"
            f"  {progress.duplicates} held  {progress.failed} failed  {rate:.0f} files/s"
        )
        self.line.draw(progress.files_done / total if total else 1.0, text)

    def done(self) -> None:
        self.line.done()
