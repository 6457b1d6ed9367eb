"""``camtrap classify``, ``camtrap eval``, ``camtrap calibrate`` and ``camtrap model import|info``.

Each subcommand's ``func(args, settings_loader) -> int``; ``settings_loader()`` returns the
Settings or raises ConfigError. Exit codes: 0 ok, 1 some inputs failed, 2 cannot start (bad
config, pack, calibration file or argument); a ``UserError`` carries the others (docs/agent.md,
"Exit codes"): 66 an input path (DIR, labels) does not exist, 65 an input is empty or malformed
(nothing classified, a bad labels file or --split-by column), 73 an output (``--plot``,
``calibrate --out``) cannot be written, 69 matplotlib is missing for ``--plot``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from device.config import ConfigError, LocationSection, Settings, shown_path
from device.errors import UserError
from device.exitcodes import Exit

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp"}
# `eval --synthetic N`: each burst is rendered and classified (about a second on a Pi).
MAX_SYNTHETIC_BURSTS = 10_000

SettingsLoader = Callable[[], Settings]


def _err(command: str, message: str) -> None:
    print(f"camtrap {command}: {message}", file=sys.stderr)


@dataclass
class _Loaded:
    engine: Any  # VisionEngine
    settings: Settings
    location: LocationSection

    def maker(self) -> Any:
        """Fresh engines over the loaded pack (``device.vision.event_eval.EngineMaker``)."""
        from device.vision.event_eval import EngineMaker

        return EngineMaker(self.engine, self.settings.vision, self.location)


def _load(
    args: argparse.Namespace, settings_loader: SettingsLoader, command: str
) -> _Loaded | None:
    """The engine the command runs, with the settings it was built from; None after printing
    one line (bad config, location override, pack or calibration file)."""
    from device.vision.engine import VisionEngine
    from device.vision.pack import PackError

    try:
        settings = settings_loader()
        location = settings.location
        if getattr(args, "country", None) or getattr(args, "admin1", None):
            location = LocationSection(
                **{
                    **location.model_dump(),
                    "country": (args.country or location.country or "").upper() or None,
                    "admin1": (args.admin1 or "").upper() or None,
                }
            )
        pack = Path(args.pack) if getattr(args, "pack", None) else settings.vision.pack
        return _Loaded(VisionEngine.load(pack, settings.vision, location), settings, location)
    except ConfigError as exc:
        _err(command, str(exc))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        message = str(first["msg"]).removeprefix("Value error, ")
        _err(command, f"--{first['loc'][0]} {first.get('input')!s}: {message}")
    except PackError as exc:
        _err(command, str(exc))
    return None


def _engine(args: argparse.Namespace, settings_loader: SettingsLoader, command: str) -> Any:
    loaded = _load(args, settings_loader, command)
    return None if loaded is None else loaded.engine


def _expand(paths: list[str]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
        else:
            yield path  # a missing or bad file gets its own error line


def _exists(path: str) -> bool:
    try:
        return Path(path).exists()
    except OSError:  # a name too long to be a file, or an unreadable parent
        return False


def _check_inputs(paths: list[str]) -> list[Path]:
    """The images the PATHs name, or a UserError: every PATH missing (66), none an image (65).

    A missing file among others that exist is reported per file, like a corrupt one.
    """
    missing = [p for p in paths if not _exists(p)]
    if len(missing) == len(paths):
        first = shown_path(missing[0])
        what = first if len(missing) == 1 else f"{first} (and {len(missing) - 1} more)"
        raise UserError(f"classify: {what}: no such file or directory", Exit.NO_INPUT)
    try:
        files = list(_expand(paths))
    except OSError as exc:
        raise UserError(
            f"classify: {exc.filename}: cannot list ({exc.strerror})", Exit.NO_INPUT
        ) from exc
    if not files:
        kinds = ", ".join(sorted(IMAGE_SUFFIXES))
        raise UserError(
            f"classify: {', '.join(paths)}: no image files ({kinds}) in it", Exit.DATA_ERROR
        )
    return files


def cmd_classify(args: argparse.Namespace, settings_loader: SettingsLoader) -> int:
    from device.vision.preprocess import ImageError

    files = _check_inputs(args.paths)
    engine = _engine(args, settings_loader, "classify")
    if engine is None:
        return 2
    failures = 0
    for path in files:
        try:
            result = engine.classify_image(path)
        except ImageError as exc:
            failures += 1
            _err("classify", str(exc))
            if args.json:
                print(json.dumps({"file": str(path), "error": str(exc)}), flush=True)
            continue
        if args.json:
            out = result.to_json()
            details = out.pop("details")
            out["top"] = details.get("top", [])
            if args.details:
                out["details"] = details
            print(json.dumps(out), flush=True)
        else:
            name = result.common_name or result.scientific_name or ""
            level = f" ({result.taxon_level})" if result.taxon_level else ""
            conf = "" if result.confidence is None else f" p={result.confidence:.2f}"
            print(
                f"{path}: {result.observation_type} {name}{level}{conf} "
                f"blank_score={result.blank_score:.3f} {result.ms:.0f} ms",
                flush=True,
            )
    if failures and failures == len(files):
        raise UserError(
            f"classify: none of the {failures} file(s) could be classified", Exit.DATA_ERROR
        )
    if failures:
        _err("classify", f"{failures} file(s) could not be classified")
    return 1 if failures else 0


def _check_output(command: str, target: str, option: str) -> Path:
    """An output file must be creatable: fail before the work, not after it (73)."""
    path = Path(target)
    parent = path.parent
    what = f"{command} {option} {path}"
    if path.is_dir():
        raise UserError(f"{what}: is a directory; give a file name", Exit.CANT_CREATE)
    if not parent.is_dir():
        raise UserError(f"{what}: directory {parent} does not exist", Exit.CANT_CREATE)
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserError(f"{what}: not writable", Exit.CANT_CREATE)
    return path


def _check_plot(target: str) -> Path:
    """``eval --plot``: fail before the evaluation, not after it, when the PNG cannot be made."""
    path = Path(target)
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise UserError(
            f"eval --plot {path}: needs matplotlib (apt install python3-matplotlib)",
            Exit.UNAVAILABLE,
        ) from exc
    return _check_output("eval", target, "--plot")


def _check_synthetic(command: str, n: int | None) -> None:
    if n is not None and not 1 <= n <= MAX_SYNTHETIC_BURSTS:
        raise UserError(
            f"{command} --synthetic {n}: must be between 1 and {MAX_SYNTHETIC_BURSTS}",
            Exit.USAGE,
        )


def _labelled(command: str, args: argparse.Namespace) -> tuple[Path, Path, list[Any]]:
    """(folder, labels file, rows) of ``DIR --labels``; UserError 66 when either is missing,
    65 when the labels are malformed or empty."""
    from device.vision import evaluate

    folder = Path(args.dir)
    labels = Path(args.labels) if args.labels else folder / "labels.csv"
    if not folder.is_dir():
        raise UserError(f"{command}: {folder}: no such directory", Exit.NO_INPUT)
    try:
        rows = evaluate.read_labels(labels)
    except FileNotFoundError as exc:
        raise UserError(f"{command}: {labels}: no such labels file", Exit.NO_INPUT) from exc
    except IsADirectoryError as exc:
        raise UserError(f"{command}: {labels}: is a directory", Exit.NO_INPUT) from exc
    except OSError as exc:
        raise UserError(
            f"{command}: {labels}: cannot read ({exc.strerror})", Exit.NO_INPUT
        ) from exc
    except ValueError as exc:
        raise UserError(f"{command}: {exc}", Exit.DATA_ERROR) from exc
    if not rows:
        raise UserError(f"{command}: {labels}: no rows below the header", Exit.DATA_ERROR)
    return folder, labels, rows


def _plan(command: str, args: argparse.Namespace, loaded: _Loaded, folder: Path,
          labels: Path, rows: list[Any]) -> Any:  # fmt: skip
    from device.vision.sequences import plan_events

    columns = list(rows[0].columns)
    split_by = getattr(args, "split_by", None)
    if split_by and split_by not in columns:
        raise UserError(
            f"{command} --split-by {split_by}: {labels} has no column {split_by!r} "
            f"(columns: {', '.join(columns)})",
            Exit.DATA_ERROR,
        )
    gap = args.gap if args.gap is not None else loaded.settings.vision.sequence_cutoff_s
    return plan_events(rows, folder, gap, columns)


def _write_plot(draw: Callable[[Path], None], plot: Path) -> None:
    try:
        draw(plot)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise UserError(f"eval --plot {plot}: cannot write ({reason})", Exit.CANT_CREATE) from exc
    print(f"plot: {plot}")


def cmd_eval(args: argparse.Namespace, settings_loader: SettingsLoader) -> int:
    from device.vision import evaluate

    _check_synthetic("eval", args.synthetic)
    if args.gap is not None and not args.events:
        raise UserError("eval --gap: needs --events (it groups photos into events)", Exit.USAGE)
    if args.split_by and not args.events:
        raise UserError("eval --split-by: needs --events", Exit.USAGE)
    if args.synthetic and (args.dir or args.split_by):
        raise UserError("eval --synthetic: give either DIR or --synthetic N", Exit.USAGE)
    if args.gap is not None and not args.gap > 0:
        raise UserError(f"eval --gap {args.gap}: must be more than 0 seconds", Exit.USAGE)
    plot = _check_plot(args.plot) if args.plot else None
    if args.synthetic:
        return _eval_synthetic(args, settings_loader, plot)
    if not args.dir:
        _err("eval", "give a DIR of labelled images, or --synthetic N")
        return 2
    folder, labels, rows = _labelled("eval", args)
    if args.events:
        return _eval_events(args, settings_loader, plot, folder, labels, rows)
    engine = _engine(args, settings_loader, "eval")
    if engine is None:
        return 2
    report = evaluate.evaluate(engine, folder, labels)
    print(f"model: {engine.classified_by}")
    print(evaluate.format_report(report))
    if plot is not None:
        _write_plot(lambda out: evaluate.plot(report, out), plot)
    return 1 if any(s.error for s in report.samples) else 0


def _eval_synthetic(
    args: argparse.Namespace, settings_loader: SettingsLoader, plot: Path | None
) -> int:
    from device.vision.eval_report import format_event_report, plot_levels
    from device.vision.event_eval import event_report, run_events, synthetic_events

    loaded = _load(args, settings_loader, "eval")
    if loaded is None:
        return 2
    maker = loaded.maker()
    scores = run_events(synthetic_events(args.synthetic, args.seed), maker.configured)
    report = event_report(
        scores,
        loaded.engine.operating_point,
        classified_by=loaded.engine.classified_by,
        grouping=f"synthetic bursts (device.hardware.scene, seed {args.seed})",
        site_rule="one synthetic site",
        breakdown="scene kind",
    )
    print(f"model: {loaded.engine.classified_by}")
    print(format_event_report(report, per_event=False))
    if plot is not None:
        _write_plot(lambda out: plot_levels(report, out), plot)
    return 0


def _eval_events(
    args: argparse.Namespace,
    settings_loader: SettingsLoader,
    plot: Path | None,
    folder: Path,
    labels: Path,
    rows: list[Any],
) -> int:
    from datetime import UTC, datetime

    from device.vision.eval_report import format_event_report, format_split, plot_levels
    from device.vision.event_eval import (
        event_report,
        labelled_events,
        leave_one_group_out,
        run_events,
    )

    loaded = _load(args, settings_loader, "eval")
    if loaded is None:
        return 2
    plan = _plan("eval", args, loaded, folder, labels, rows)
    lores = loaded.settings.camera.lores_size
    maker = loaded.maker()
    has_difficulty = "difficulty" in rows[0].columns
    scores = run_events(labelled_events(plan.events, lores), maker.configured)
    report = event_report(
        scores,
        loaded.engine.operating_point,
        classified_by=loaded.engine.classified_by,
        grouping=plan.grouping,
        site_rule=plan.site_rule,
        breakdown="difficulty" if has_difficulty else None,
    )
    print(f"model: {loaded.engine.classified_by}")
    print(format_event_report(report))
    if args.split_by:
        if loaded.settings.vision.blank_threshold is not None:
            print("note: vision.blank_threshold is set, so every fold uses it, not its table")
        split = leave_one_group_out(
            args.split_by,
            lambda: labelled_events(plan.events, lores, split_by=args.split_by),
            maker,
            level="event",
            created=datetime.now(UTC),
            set_name=folder.name or str(folder),
        )
        if len(split.folds) < 2:
            raise UserError(
                f"eval --split-by {args.split_by}: needs at least 2 groups, found "
                f"{len(split.folds)}",
                Exit.DATA_ERROR,
            )
        print()
        print(format_split(split))
    if plot is not None:
        _write_plot(lambda out: plot_levels(report, out), plot)
    if report.frame.errors == len(rows):
        raise UserError(f"eval: none of the {len(rows)} image(s) could be read", Exit.DATA_ERROR)
    return 1 if report.frame.errors else 0


def cmd_calibrate(args: argparse.Namespace, settings_loader: SettingsLoader) -> int:
    from datetime import UTC, datetime

    from device.contracts.calibration import Level
    from device.contracts.durable import atomic_write
    from device.vision.calibration import Scored, calibrate, format_table

    _check_synthetic("calibrate", args.synthetic)
    if bool(args.synthetic) == bool(args.dir):
        raise UserError("calibrate: give either DIR (with --labels) or --synthetic N", Exit.USAGE)
    if args.gap is not None and not args.events:
        raise UserError("calibrate --gap: needs --events", Exit.USAGE)
    if args.gap is not None and not args.gap > 0:
        raise UserError(f"calibrate --gap {args.gap}: must be more than 0 seconds", Exit.USAGE)
    out = _check_output("calibrate", args.out, "--out")
    labelled = None if args.synthetic else _labelled("calibrate", args)
    loaded = _load(args, settings_loader, "calibrate")
    if loaded is None:
        return 2
    maker = loaded.maker()
    failures = 0
    level: Level
    if labelled is None:
        from device.vision.event_eval import items_at, run_events, synthetic_events

        level = "event"
        name = args.name or (
            f"synthetic bursts (device.hardware.scene) seed={args.seed} n={args.synthetic}"
        )
        items = items_at("event", run_events(synthetic_events(args.synthetic, args.seed),
                                              maker.uncalibrated))  # fmt: skip
    elif args.events:
        from device.vision.event_eval import items_at, labelled_events, run_events

        folder, labels, rows = labelled
        plan = _plan("calibrate", args, loaded, folder, labels, rows)
        scores = run_events(
            labelled_events(plan.events, loaded.settings.camera.lores_size), maker.uncalibrated
        )
        level = "event"
        name = args.name or folder.resolve().name
        items = items_at("event", scores)
        failures = sum(f.score is None for e in scores for f in e.frames)
        print(f"events by {plan.grouping}; sites: {plan.site_rule}")
    else:
        from device.vision.preprocess import ImageError

        folder, _labels, rows = labelled
        engine = maker.uncalibrated()
        level = "frame"
        name = args.name or folder.resolve().name
        items = []
        for row in rows:
            try:
                result = engine.classify_image(folder / row.file)
            except ImageError as exc:
                failures += 1
                _err("calibrate", str(exc))
                continue
            items.append(Scored(result.blank_score, row.label != "blank"))
    if not items:
        raise UserError("calibrate: nothing could be scored", Exit.DATA_ERROR)
    table = calibrate(
        items,
        name=name,
        level=level,
        created=datetime.now(UTC).replace(microsecond=0),
        classified_by=loaded.engine.classified_by,
    )
    try:
        atomic_write(out, table.to_json())
    except OSError as exc:
        raise UserError(
            f"calibrate --out {out}: cannot write ({exc.strerror or exc})", Exit.CANT_CREATE
        ) from exc
    print(f"model: {loaded.engine.classified_by}")
    print(format_table(table))
    print(f"wrote {out}")
    if failures:
        _err("calibrate", f"{failures} image(s) could not be scored")
    return 1 if failures else 0


def cmd_model_import(args: argparse.Namespace, settings_loader: SettingsLoader) -> int:
    from device.vision.automl import import_automl
    from device.vision.pack import PackError

    try:
        out = import_automl(Path(args.export_dir), Path(args.out), args.name, args.version)
    except PackError as exc:
        _err("model import", str(exc))
        return 2
    print(f"wrote pack {out}")
    return 0


def describe_pack(path: Path, backbones: list[Path] | None = None) -> dict[str, Any]:
    """What ``camtrap model info`` shows; a head's backbone is looked for in ``backbones``
    first (then beside the head and in the shipped default pack)."""
    from device.vision.pack import load_pack
    from device.vision.runtime import Model

    pack = load_pack(path, backbones=backbones or ())
    model = Model.for_pack(pack)
    kinds = Counter(t.kind for t in pack.taxa)
    m = pack.manifest
    return {
        "pack": str(path),
        "kind": pack.kind,
        "name": pack.name,
        "version": pack.version,
        "classified_by": pack.classified_by,
        **_kind_details(pack),
        "created": m.get("created"),
        "min_agent_version": m.get("min_agent_version"),
        "expires": m.get("expires"),
        "license": m.get("license"),
        "description": m.get("description"),
        "runtime": model.runtime,
        "input": {
            "shape": list(model.input.shape),
            "dtype": model.input.dtype.name,
            "quantization": [model.input.scale, model.input.zero_point],
        },
        "output": {
            "shape": list(model.output.shape),
            "dtype": model.output.dtype.name,
            "quantization": [model.output.scale, model.output.zero_point],
        }
        if pack.head is None
        else {"shape": [1, model.num_classes], "dtype": "float32", "from": "the head"},
        "embedding": None
        if model.embedding is None
        else {
            "shape": list(model.embedding.shape),
            "dtype": model.embedding.dtype.name,
            "quantization": [model.embedding.scale, model.embedding.zero_point],
        },
        "preprocess": {"resize": pack.resize, "mean": list(pack.mean), "std": list(pack.std)},
        "labels": len(pack.labels),
        "kinds": dict(sorted(kinds.items())),
        "geofence_rules": len(pack.geofence),
        "thresholds": pack.thresholds,
        "calibration": None
        if pack.calibration is None
        else {
            "measured_on": pack.calibration.measured_on.model_dump(mode="json"),
            "thresholds": {f"{p.target_recall:g}": p.threshold for p in pack.calibration.points},
        },
        "golden": [g.name for g in pack.golden],
        "files": {n: f.get("size") for n, f in sorted(m["files"].items())},
        "checksums": "ok",
        "signed": bool(m.get("signature")),
    }


def _kind_details(pack: Any) -> dict[str, Any]:
    """A head's backbone and classes, a backbone's embedding; nothing more for a full pack."""
    if pack.kind == "backbone":
        return {"embedding_size": None if pack.embedding is None else pack.embedding.size}
    if pack.head is None:
        return {}
    spec = pack.manifest["head"]
    return {
        "backbone": {
            "name": pack.manifest["backbone"]["name"],
            "version": pack.manifest["backbone"]["version"],
            "sha256": pack.model_sha256,
            "embedding_size": pack.head.embedding_size,
            "found": str(pack.backbone_path),
            "serves_as": pack.model_from,
        },
        "head": {
            "file": spec["file"],
            "weights": pack.head.storage,
            "bytes": pack.manifest["files"][spec["file"]].get("size"),
        },
        "classes": [
            {"label": name, "kind": taxon.kind}
            for name, taxon in zip(pack.display_names, pack.taxa, strict=True)
        ],
    }


def cmd_model_info(args: argparse.Namespace, settings_loader: SettingsLoader) -> int:
    from device.vision.pack import PackError
    from device.vision.runtime import ModelError

    try:
        info = describe_pack(Path(args.pack), [Path(b) for b in args.backbone or ()])
    except (PackError, ModelError) as exc:
        _err("model info", str(exc))
        return 2
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for key, value in info.items():
        if key == "files":
            print("files:")
            for name, size in value.items():
                print(f"  {name}  {size} bytes")
        elif key == "classes":
            print("classes:")
            for entry in value:
                print(f"  {entry['label']}  ({entry['kind']})")
        else:
            print(f"{key}: {value if not isinstance(value, dict) else json.dumps(value)}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("classify", help="classify images or folders of images")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--json", action="store_true", help="one JSON object per image per line")
    p.add_argument("--details", action="store_true", help="with --json: crops, rollup, motion")
    p.add_argument("--country", help="ISO 3166-1 alpha-3 (overrides location.country)")
    p.add_argument("--admin1", help="USA state code (overrides location.admin1)")
    p.add_argument("--pack", help="model pack (overrides vision.pack)")
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("eval", help="score the blank filter and classifier on labelled images")
    p.add_argument("dir", nargs="?")
    p.add_argument("--labels", help="CSV file,label[,species] (default DIR/labels.csv)")
    p.add_argument(
        "--synthetic", type=int, metavar="N", help="instead: N synthetic bursts, with motion"
    )
    p.add_argument("--seed", type=int, default=1, help="seed for --synthetic")
    p.add_argument(
        "--events",
        action="store_true",
        help="group frames into events and run the trap's per-event path (frame + event figures)",
    )
    p.add_argument(
        "--gap", type=float, metavar="S", help="with --events: EXIF time gap that splits events"
    )
    p.add_argument(
        "--split-by",
        metavar="COLUMN",
        help="with --events: leave-one-group-out, calibrating on the other groups of COLUMN",
    )
    p.add_argument("--plot", help="write a precision/recall PNG here")
    p.add_argument("--country")
    p.add_argument("--admin1")
    p.add_argument("--pack")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "calibrate", help="blank thresholds by target recall, measured on a labelled set"
    )
    p.add_argument("dir", nargs="?")
    p.add_argument("--labels", help="CSV file,label[,event,...] (default DIR/labels.csv)")
    p.add_argument("--events", action="store_true", help="calibrate per event (the trap's path)")
    p.add_argument("--gap", type=float, metavar="S", help="with --events: EXIF time gap")
    p.add_argument(
        "--synthetic", type=int, metavar="N", help="instead: N synthetic bursts (event level)"
    )
    p.add_argument("--seed", type=int, default=1, help="seed for --synthetic")
    p.add_argument("--out", required=True, metavar="FILE", help="the calibration file to write")
    p.add_argument("--name", help="name of the set, recorded in the file")
    p.add_argument("--pack")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("model", help="model packs")
    msub = p.add_subparsers(dest="model_command", required=True)
    q = msub.add_parser("import", help="turn an AutoML Edge export into a pack")
    q.add_argument("export_dir", metavar="AUTOML_EXPORT_DIR")
    q.add_argument("--out", required=True, metavar="PACK_DIR")
    q.add_argument("--name")
    q.add_argument("--version", default="1.0.0")
    q.set_defaults(func=cmd_model_import)
    q = msub.add_parser("info", help="what a pack holds (verifies its checksums)")
    q.add_argument("pack", metavar="PACK")
    q.add_argument(
        "--backbone",
        action="append",
        metavar="PACK",
        help="for a head: where its backbone is (default: beside it, then the shipped pack)",
    )
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_model_info)


def main(argv: list[str] | None = None) -> int:
    from device.config import load_settings

    parser = argparse.ArgumentParser(prog="camtrap")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args, load_settings)


if __name__ == "__main__":
    sys.exit(main())
