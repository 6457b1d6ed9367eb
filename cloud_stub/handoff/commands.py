"""``camtrap-cloud handoff``: the training hand-off pipeline (Apache Beam).

Everything after ``--`` is a Beam pipeline option and goes to Beam unchanged
(``-- --runner DataflowRunner --project ... --region ... --temp_location gs://...``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from cloud_stub.handoff.categories import DEFAULT_DROP, read_patterns
from cloud_stub.handoff.copying import CopyPolicy
from cloud_stub.handoff.records import HandoffError


def _handoff(args: argparse.Namespace) -> int:
    from cloud_stub.ingest.store import guard_store

    return guard_store(
        "camtrap-cloud handoff", lambda: _run_handoff(args), args.ingest_root, args.db
    )


def _run_handoff(args: argparse.Namespace) -> int:
    from cloud_stub.handoff.handoff import HandoffConfig, run_handoff

    # Beam logs every stage at INFO and warns about optional cloud clients; keep the output
    # to the report unless asked.
    if args.log_level.upper() != "DEBUG":
        logging.getLogger("apache_beam").setLevel(logging.ERROR)
    patterns = list(DEFAULT_DROP) if not args.no_default_drops else []
    if args.drop_file:
        try:
            patterns += read_patterns(args.drop_file)
        except OSError as exc:
            print(f"camtrap-cloud handoff: cannot read {args.drop_file}: {exc}", file=sys.stderr)
            return 2
    patterns += args.drop or []
    config = HandoffConfig(
        out_dir=args.out,
        coco=args.coco,
        url_prefix=args.url_prefix or "",
        ingest_root=args.ingest_root,
        db_url=args.db,
        include_machine=args.include_machine,
        dest=args.dest,
        drop_patterns=tuple(patterns),
        min_per_class=args.min_per_class,
        max_per_class=args.max_per_class,
        seed=args.seed,
        dry_run=args.dry_run,
        skip_bad=args.skip_bad,
        copy_policy=CopyPolicy(attempts=args.attempts, backoff_s=args.backoff),
        beam_args=[a for a in args.beam_args if a != "--"],
    )
    try:
        report = run_handoff(config)
    except HandoffError as exc:
        print(f"camtrap-cloud handoff: {exc}", file=sys.stderr)
        return 1
    print(report.text())
    return 1 if report.copies.get("failed") else 0


def register(sub: argparse._SubParsersAction) -> None:
    from cloud_stub.ingest.opening import add_db_argument

    p = sub.add_parser(
        "handoff",
        help="clean, balance and copy labelled images for AutoML (Apache Beam)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", type=Path, required=True, help="dir for CSV, manifest and report")
    p.add_argument("--coco", help="COCO Camera Traps JSON (path or gs:// URI)")
    p.add_argument("--url-prefix", help="turns file_name into an image URL/path")
    p.add_argument("--ingest-root", type=Path, help="use the stub's verified observations")
    add_db_argument(p)
    p.add_argument(
        "--include-machine",
        action="store_true",
        help="with --ingest-root: also unreviewed machine labels",
    )
    p.add_argument("--dest", help="where images are copied (dir or gs://...; default OUT/images)")
    p.add_argument("--max-per-class", type=int, default=100)
    p.add_argument("--min-per-class", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--drop",
        action="append",
        metavar="PATTERN",
        help="also drop this category ('name', 'prefix*', '*suffix'; repeatable)",
    )
    p.add_argument("--drop-file", type=Path, help="more patterns, one per line")
    p.add_argument(
        "--no-default-drops",
        action="store_true",
        help="do not drop the default categories: " + ", ".join(DEFAULT_DROP),
    )
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out bad COCO entries (counted) instead of refusing the file",
    )
    p.add_argument("--dry-run", action="store_true", help="counts only: no CSV, no copies")
    p.add_argument("--attempts", type=int, default=4, help="download attempts per image")
    p.add_argument("--backoff", type=float, default=0.5, help="first retry wait, doubling (s)")
    p.add_argument(
        "beam_args",
        nargs=argparse.REMAINDER,
        help="after --: Apache Beam pipeline options, passed on unchanged",
    )
    p.set_defaults(func=_handoff)
