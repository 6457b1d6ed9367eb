"""``camtrap-cloud report``: plots and a text summary for people."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _report(args: argparse.Namespace) -> int:
    from cloud_stub.ingest.store import guard_store

    return guard_store("camtrap-cloud report", lambda: _run(args), args.root, args.db)


def _run(args: argparse.Namespace) -> int:
    from cloud_stub.export.package import ExportError
    from cloud_stub.report.report import write_report

    try:
        out = write_report(args.root, args.out, url=args.db)
    except ExportError as exc:  # no store: the same message the export gives
        print(f"camtrap-cloud report: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"camtrap-cloud report: cannot write {args.out}: {exc}", file=sys.stderr)
        return 1
    print((out / "summary.txt").read_text(encoding="utf-8"), end="")
    print(f"report: {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from cloud_stub.ingest.opening import add_db_argument

    p = sub.add_parser("report", help="plots and a text summary of what the traps delivered")
    p.add_argument("--root", type=Path, required=True, help="the ingest data dir")
    add_db_argument(p)
    p.add_argument("--out", type=Path, default=Path("report"), help="output dir (default: report)")
    p.set_defaults(func=_report)
