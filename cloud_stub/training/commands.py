"""``camtrap-cloud train``: fit a head on reviewed labels and write it as a head pack
(docs/learning.md).

Sources: ``--root INGEST`` (human-reviewed observations only; ``--deployment`` or
``--country`` narrow it) or ``--images DIR --labels labels.csv`` (a labelled folder, or the
hand-off's AutoML import CSV). The head is refused (exit 1, nothing written) when it is worse
than the serving model on the held-out events; ``--force`` writes it anyway and says so.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

# Only the manifest's names here: the parser of every camtrap-cloud command is built at start,
# and numpy, scikit-learn and the interpreter are loaded when training runs.
from cloud_stub.ingest.opening import add_db_argument
from device.contracts.manifest import HEAD_WEIGHTS

PROG = "camtrap-cloud train"


def _fail(message: str, code: int = 1) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return code


def _usage_problem(args: argparse.Namespace) -> str | None:
    if args.root is None and args.images is None:
        return "give a source: --root INGEST, or --images DIR with --labels labels.csv"
    if args.images is not None and args.labels is None:
        return "--images needs --labels labels.csv"
    if args.labels is not None and args.images is None:
        return "--labels needs --images DIR"
    if args.root is None and (args.deployment or args.country or args.registry):
        return "--deployment, --country and --registry select from --root INGEST"
    if args.deployment and args.country:
        return "give --deployment or --country, not both"
    if args.country and not args.registry:
        return (
            "--country needs --registry DIR: the ingest store does not record where a "
            "deployment is; the registry's provisioning records do"
        )
    if args.site_head and args.country:
        return "--site-head trains on one site: give --deployment, not --country"
    if not 0 < args.target_recall < 1:
        return f"--target-recall {args.target_recall:g} is not between 0 and 1"
    if args.min_per_class < 1 or args.max_per_class < args.min_per_class:
        return "need 1 <= --min-per-class <= --max-per-class"
    if not args.c > 0:
        return f"--c {args.c:g} must be above 0 (the inverse of the L2 penalty)"
    return None


def _train(args: argparse.Namespace) -> int:
    problem = _usage_problem(args)
    if problem:
        return _fail(problem, 2)
    if args.root is None:
        return _run(args)
    from cloud_stub.ingest.store import guard_store

    return guard_store(PROG, lambda: _run(args), args.root, args.db)


def _run(args: argparse.Namespace) -> int:
    from cloud_stub.training.errors import TrainingError
    from cloud_stub.training.pipeline import TrainConfig, run_training
    from device.contracts.pack import DEFAULT_PACK_DIR

    config = TrainConfig(
        out=args.out,
        backbone=args.backbone or DEFAULT_PACK_DIR,
        root=args.root,
        db_url=args.db,
        deployment=args.deployment,
        country=args.country,
        registry=args.registry,
        images=args.images,
        labels=args.labels,
        serving=args.serving,
        site_head=args.site_head,
        name=args.name,
        version=args.version,
        target_recall=args.target_recall,
        min_per_class=args.min_per_class,
        max_per_class=args.max_per_class,
        seed=args.seed,
        c=args.c,
        weights=args.weights,
        cache=args.cache,
        report=args.report,
        force=args.force,
    )
    try:
        result = run_training(config)
    except TrainingError as exc:
        return _fail(str(exc))
    _show(result.report, args.json)
    if not result.written:
        return _fail(
            f"refused: the head is worse than the serving model on the "
            f"{result.report['blank_filter']['measured_on']}: {'; '.join(result.worse)}; "
            "nothing written (--force writes it anyway)"
        )
    if not result.report["pack"]["golden"]:
        print(
            f"{PROG}: warning: the head got no held-out frame right, so the pack has no golden "
            "images: the trap's self-test has nothing to run and an OTA offer needs them",
            file=sys.stderr,
        )
    if result.worse:
        print(
            f"{PROG}: --force: wrote a head that is worse than the serving model "
            f"({'; '.join(result.worse)}); its manifest says training.forced: true",
            file=sys.stderr,
        )
    return 0


def _show(report: dict[str, Any], as_json: bool) -> None:
    from cloud_stub.training.report import report_text

    if as_json:
        print(json.dumps(report, sort_keys=True))
    else:
        print(report_text(report))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="fit a head on reviewed labels and write a head pack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--backbone",
        metavar="PACK",
        type=Path,
        help="the pack whose embedding the head reads (default: the shipped pack)",
    )
    p.add_argument(
        "--out",
        metavar="HEAD_PACK",
        type=Path,
        required=True,
        help="the head pack's directory (new)",
    )
    p.add_argument(
        "--root", metavar="INGEST", type=Path, help="an ingest store: its human-reviewed frames"
    )
    add_db_argument(p)
    p.add_argument("--deployment", metavar="D", help="with --root: only this deployment's reviews")
    p.add_argument(
        "--country", metavar="C", help="with --root: only deployments in this country code"
    )
    p.add_argument(
        "--registry",
        metavar="DIR",
        type=Path,
        help="with --country: the registry's data dir, which knows the countries",
    )
    p.add_argument("--images", metavar="DIR", type=Path, help="a folder of labelled photos")
    p.add_argument(
        "--labels",
        metavar="CSV",
        type=Path,
        help="with --images: labels.csv (file,label[,event][,deployment]) or an "
        "AutoML import CSV (IMAGE_URI,LABEL)",
    )
    p.add_argument(
        "--serving",
        metavar="PACK",
        type=Path,
        help="the pack the head must beat (default: --backbone's own classifier)",
    )
    p.add_argument(
        "--site-head",
        action="store_true",
        help="blank against not blank for one site (with --deployment or one folder)",
    )
    p.add_argument(
        "--name", metavar="N", help="the head's pack name (default head-<deployment or folder>)"
    )
    p.add_argument(
        "--version", metavar="V", default="1.0.0", help="the head's version (default 1.0.0)"
    )
    p.add_argument(
        "--target-recall",
        type=float,
        default=0.98,
        help="recall of not-blank events the blank threshold must keep (0.98)",
    )
    p.add_argument(
        "--min-per-class",
        type=int,
        default=5,
        help="leave out classes with fewer training photos (default 5)",
    )
    p.add_argument(
        "--max-per-class",
        type=int,
        default=1000,
        help="at most this many training photos per class (default 1000)",
    )
    p.add_argument("--seed", type=int, default=0, help="split and balance seed (default 0)")
    p.add_argument(
        "--c",
        type=float,
        default=1.0,
        help="inverse L2 regularisation strength of the regression (default 1.0)",
    )
    p.add_argument(
        "--weights",
        choices=HEAD_WEIGHTS,
        default="int8",
        help="int8 (per-class scales, default) or float16",
    )
    p.add_argument(
        "--cache",
        metavar="DIR",
        type=Path,
        help="embedding cache dir (default <root>/embeddings or ~/.cache/camtrap/embeddings)",
    )
    p.add_argument("--report", metavar="DIR", type=Path, help="report dir (default <out>.report)")
    p.add_argument(
        "--force",
        action="store_true",
        help="write the head even when it is worse than the serving model",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_train)
