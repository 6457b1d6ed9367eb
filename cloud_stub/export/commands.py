"""``camtrap-cloud export camtrap-dp``, ``export validate`` and ``export locate``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

from cloud_stub.export.metadata import CONTRIBUTOR_ROLES, SAMPLING_DESIGNS, ProjectInfo
from cloud_stub.export.package import ExportError
from cloud_stub.export.source import Selection


def aware_datetime(text: str) -> datetime:
    """A date (midnight UTC) or a datetime with its offset; a naive datetime is ambiguous."""
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date or datetime: {text!r}") from exc
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} has no UTC offset; write e.g. {text}+00:00 or {text}Z"
        )
    return moment


def contributor(text: str) -> dict[str, str]:
    """``"Name"`` or ``"Name:role"``."""
    title, _, role = text.rpartition(":") if ":" in text else (text, "", "")
    entry = {"title": title.strip()}
    if role:
        if role not in CONTRIBUTOR_ROLES:
            raise argparse.ArgumentTypeError(f"role must be one of {', '.join(CONTRIBUTOR_ROLES)}")
        entry["role"] = role
    if not entry["title"]:
        raise argparse.ArgumentTypeError("a contributor needs a name")
    return entry


def _export(args: argparse.Namespace) -> int:
    from cloud_stub.ingest.store import guard_store

    return guard_store("camtrap-cloud export", lambda: _run_export(args), args.root, args.db)


def _run_export(args: argparse.Namespace) -> int:
    from cloud_stub.export.camtrap_dp import run_export

    if (args.data_license is None) != (args.media_license is None):
        print(
            "camtrap-cloud export: give both --data-license and --media-license, or neither",
            file=sys.stderr,
        )
        return 2
    selection = Selection(
        deployments=tuple(args.deployment or ()),
        since=args.since,
        until=args.until,
        media_url_prefix=args.media_url_prefix,
        public=args.public,
        skip_unlocated=args.skip_unlocated,
        db_url=args.db,
    )
    project = ProjectInfo(
        title=args.title,
        sampling_design=args.sampling_design,
        contributors=args.contributor or ProjectInfo().contributors,
        data_license=args.data_license,
        media_license=args.media_license,
    )
    try:
        written = run_export(
            args.root, args.out_dir, selection=selection, project=project, overwrite=args.overwrite
        )
    except ExportError as exc:
        print(f"camtrap-cloud export: {exc}", file=sys.stderr)
        return 1
    counts = ", ".join(f"{n} {k}" for k, n in written.counts.items())
    state = "validated" if written.validated else "NOT validated"
    print(f"Camtrap DP package ({state}): {written.descriptor}")
    print(f"  {counts}")
    for note in written.notes:
        print(f"  note: {note}")
    return 0


def bounded(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not low <= value <= high:  # also refuses nan and inf
            raise argparse.ArgumentTypeError(f"must be a number from {low:g} to {high:g}")
        return value

    return parse


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError("must be a whole number of metres, at least 1")
    return value


def _locate(args: argparse.Namespace) -> int:
    from cloud_stub.ingest.store import guard_store

    return guard_store("camtrap-cloud export locate", lambda: _run_locate(args), args.root, args.db)


def _run_locate(args: argparse.Namespace) -> int:
    from cloud_stub.ingest.opening import database_url, describe, open_store_db
    from cloud_stub.ingest.store import IngestStore, StoreError, store_path
    from device.contracts.exitcodes import Exit

    # Recording a place must not create an empty store where the path was mistyped: a missing
    # file, or a server without ingest tables (the read-only open checks for them).
    if database_url(args.db) is None:
        if not store_path(args.root).is_file():
            raise StoreError(f"no ingest store at {store_path(args.root)}", Exit.NO_INPUT)
    else:
        open_store_db(args.root, url=args.db).close()
    store = IngestStore(args.root, url=args.db)
    try:
        known = store.db.execute(
            "SELECT 1 FROM deployments WHERE deployment_id = ?", (args.deployment,)
        ).fetchone()
        if known is None:
            print(
                f"camtrap-cloud export locate: no deployment {args.deployment!r} in "
                f"{describe(args.root, args.db)} (it appears once ingest stored one of its events)",
                file=sys.stderr,
            )
            return 2
        fields = {"latitude": args.latitude, "longitude": args.longitude}
        if args.coordinate_uncertainty is not None:
            fields["coordinate_uncertainty"] = args.coordinate_uncertainty
        if args.location_name:
            fields["location_name"] = args.location_name
        store.begin()
        # No camera_id: where a camera stood says nothing about which camera it was.
        store.record_deployment(args.deployment, None, **fields)
        store.commit()
    finally:
        store.rollback()
        store.close()
    print(f"{args.deployment}: latitude {args.latitude:g}, longitude {args.longitude:g} recorded")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from cloud_stub.export.validate import validate_package

    descriptor = args.package / "datapackage.json" if args.package.is_dir() else args.package
    if not descriptor.is_file():
        print(
            f"camtrap-cloud export validate: no datapackage.json at {descriptor}", file=sys.stderr
        )
        return 2
    result = validate_package(descriptor)
    print(f"{descriptor}: {result.summary()}")
    return 0 if result.valid else 1


def register(sub: argparse._SubParsersAction) -> None:
    from cloud_stub.ingest.opening import add_db_argument

    export = sub.add_parser("export", help="publishable data packages")
    kinds = export.add_subparsers(dest="export_command", required=True)

    dp = kinds.add_parser("camtrap-dp", help="write a Camtrap DP 1.0.2 package")
    dp.add_argument("out_dir", type=Path, help="package directory (created whole or not at all)")
    dp.add_argument("--root", type=Path, required=True, help="the ingest data dir")
    add_db_argument(dp)
    dp.add_argument("--deployment", action="append", help="only this deployment (repeatable)")
    dp.add_argument("--since", type=aware_datetime, help="events from (date or datetime+offset)")
    dp.add_argument("--until", type=aware_datetime, help="events before (exclusive)")
    dp.add_argument("--media-url-prefix", help="list media as URLs under this prefix, no copies")
    dp.add_argument("--public", action="store_true", help="the media URLs are public")
    dp.add_argument(
        "--skip-unlocated",
        action="store_true",
        help="leave out deployments without coordinates instead of failing",
    )
    dp.add_argument("--overwrite", action="store_true", help="replace an existing package")
    dp.add_argument("--title", default=ProjectInfo.title, help="project title")
    dp.add_argument(
        "--sampling-design", choices=SAMPLING_DESIGNS, default=ProjectInfo.sampling_design
    )
    dp.add_argument(
        "--contributor",
        type=contributor,
        action="append",
        help='"Name" or "Name:role" (repeatable)',
    )
    dp.add_argument("--data-license", help="e.g. CC0-1.0")
    dp.add_argument("--media-license", help="e.g. CC-BY-4.0")
    dp.set_defaults(func=_export)

    locate = kinds.add_parser(
        "locate",
        help="record where a deployment's camera stood (for one no trap was provisioned for)",
    )
    locate.add_argument("deployment", help="the deploymentID, e.g. from camtrap import")
    locate.add_argument("--root", type=Path, required=True, help="the ingest data dir")
    add_db_argument(locate)
    locate.add_argument("--latitude", type=bounded(-90, 90), required=True, help="WGS84")
    locate.add_argument("--longitude", type=bounded(-180, 180), required=True, help="WGS84")
    locate.add_argument(
        "--coordinate-uncertainty",
        type=positive_int,
        help="metres (e.g. 30 for a phone's GPS)",
    )
    locate.add_argument("--location-name", help="e.g. the site's name")
    locate.set_defaults(func=_locate)

    check = kinds.add_parser("validate", help="validate a Camtrap DP package, offline")
    check.add_argument("package", type=Path, help="package dir or its datapackage.json")
    check.set_defaults(func=_validate)
