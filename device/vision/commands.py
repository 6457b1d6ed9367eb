"""``camtrap classify``, ``camtrap eval`` and ``camtrap model import|info``.

Each subcommand's ``func(args, settings_loader) -> int``; ``settings_loader()`` returns the
Settings or raises ConfigError. Exit codes: 0 ok, 1 some inputs failed, 2 cannot start (bad
config, pack or argument); a ``UserError`` carries the others (docs/agent.md, "Exit codes"):
66 an input path does not exist, 65 an input is empty or malformed (nothing classified), 73
an output (``--plot``) cannot be written, 69 matplotlib is missing for ``--plot``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator
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


def _engine(args: argparse.Namespace, settings_loader: SettingsLoader, command: str) -> Any:
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
        return VisionEngine.load(pack, settings.vision, location)
    except ConfigError as exc:
        _err(command, str(exc))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        message = str(first["msg"]).removeprefix("Value error, ")
        _err(command, f"--{first['loc'][0]} {first.get('input')!s}: {message}")
    except PackError as exc:
        _err(command, str(exc))
    return None


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
    parent = path.parent
    if path.is_dir():
        raise UserError(f"eval --plot {path}: is a directory; give a file name", Exit.CANT_CREATE)
    if not parent.is_dir():
        raise UserError(f"eval --plot {path}: directory {parent} does not exist", Exit.CANT_CREATE)
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserError(f"eval --plot {path}: not writable", Exit.CANT_CREATE)
    return path


def cmd_eval(args: argparse.Namespace, settings_loader: SettingsLoader) -> int:
    from device.vision import evaluate

    if args.synthetic is not None and not 1 <= args.synthetic <= MAX_SYNTHETIC_BURSTS:
        raise UserError(
            f"eval --synthetic {args.synthetic}: must be between 1 and {MAX_SYNTHETIC_BURSTS}",
            Exit.USAGE,
        )
    plot = _check_plot(args.plot) if args.plot else None
    if args.synthetic:
        engine = _engine(args, settings_loader, "eval")
        if engine is None:
            return 2
        samples = evaluate.evaluate_synthetic(engine, args.synthetic, args.seed)
        print(f"model: {engine.classified_by}")
        print(evaluate.format_bursts(samples, engine.thresholds.blank))
        return 0
    if not args.dir:
        _err("eval", "give a DIR of labelled images, or --synthetic N")
        return 2
    folder = Path(args.dir)
    labels = Path(args.labels) if args.labels else folder / "labels.csv"
    if not folder.is_dir():
        raise UserError(f"eval: {folder}: no such directory", Exit.NO_INPUT)
    try:
        rows = evaluate.read_labels(labels)
    except FileNotFoundError as exc:
        raise UserError(f"eval: {labels}: no such labels file", Exit.NO_INPUT) from exc
    except OSError as exc:
        raise UserError(f"eval: {labels}: cannot read ({exc.strerror})", Exit.NO_INPUT) from exc
    except ValueError as exc:
        raise UserError(f"eval: {exc}", Exit.DATA_ERROR) from exc
    if not rows:
        raise UserError(f"eval: {labels}: no rows below the header", Exit.DATA_ERROR)
    engine = _engine(args, settings_loader, "eval")
    if engine is None:
        return 2
    report = evaluate.evaluate(engine, folder, labels)
    print(f"model: {engine.classified_by}")
    print(evaluate.format_report(report))
    if plot is not None:
        try:
            evaluate.plot(report, plot)
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise UserError(
                f"eval --plot {plot}: cannot write ({reason})", Exit.CANT_CREATE
            ) from exc
        print(f"plot: {plot}")
    return 1 if any(s.error for s in report.samples) else 0


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


def describe_pack(path: Path) -> dict[str, Any]:
    from device.vision.pack import load_pack
    from device.vision.runtime import Model

    pack = load_pack(path)
    model = Model(pack.model_content)
    kinds = Counter(t.kind for t in pack.taxa)
    m = pack.manifest
    return {
        "pack": str(path),
        "name": pack.name,
        "version": pack.version,
        "classified_by": pack.classified_by,
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
        },
        "preprocess": {"resize": pack.resize, "mean": list(pack.mean), "std": list(pack.std)},
        "labels": len(pack.labels),
        "kinds": dict(sorted(kinds.items())),
        "geofence_rules": len(pack.geofence),
        "thresholds": pack.thresholds,
        "golden": [g.name for g in pack.golden],
        "files": {n: f.get("size") for n, f in sorted(m["files"].items())},
        "checksums": "ok",
        "signed": bool(m.get("signature")),
    }


def cmd_model_info(args: argparse.Namespace, settings_loader: SettingsLoader) -> int:
    from device.vision.pack import PackError
    from device.vision.runtime import ModelError

    try:
        info = describe_pack(Path(args.pack))
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
    p.add_argument("--plot", help="write a precision/recall PNG here")
    p.add_argument("--country")
    p.add_argument("--admin1")
    p.add_argument("--pack")
    p.set_defaults(func=cmd_eval)

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
