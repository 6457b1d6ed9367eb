"""Write a Camtrap DP package so that it appears whole or not at all.

Everything goes into a hidden temporary directory next to the destination; the package is
validated there and only then renamed into place. A failure at any step (a full disk, a
permission error, an invalid row) removes the temporary directory and raises ``ExportError``:
nobody ever finds a partial package under the destination's name.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloud_stub.export.tables import TABLES, write_table
from cloud_stub.export.validate import PROFILE_URL, table_schema_url, validate_package


class ExportError(Exception):
    """An export that cannot be written validly; the message says why and what to do."""


@dataclass
class PackageContent:
    """A package before it is written: properties, rows keyed by Camtrap DP names, files."""

    properties: dict[str, Any]
    deployments: list[dict[str, Any]]
    media: list[dict[str, Any]]
    observations: list[dict[str, Any]]
    # (source file, path inside the package) for media copied into the package.
    files: list[tuple[Path, str]] = field(default_factory=list)
    # Resources beyond the three Camtrap DP tables, kept as they were (e.g. inline data).
    extra_resources: list[dict[str, Any]] = field(default_factory=list)
    # What was left out and why; printed by the command and kept in the package description.
    notes: list[str] = field(default_factory=list)


@dataclass
class Written:
    descriptor: Path
    counts: dict[str, int]
    validated: bool
    notes: list[str]


def _resources(content: PackageContent) -> list[dict[str, Any]]:
    tables = [
        {
            "name": table,
            "path": f"{table}.csv",
            "profile": "tabular-data-resource",
            "format": "csv",
            "mediatype": "text/csv",
            "encoding": "utf-8",
            "schema": table_schema_url(table),
        }
        for table in TABLES
    ]
    return tables + content.extra_resources


def _place(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        # Ingest never rewrites a media file, so a hard link is as good as a copy and free.
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _fill(content: PackageContent, work: Path) -> dict[str, int]:
    counts = {
        table: write_table(work / f"{table}.csv", table, getattr(content, table))
        for table in TABLES
    }
    for source, relative in content.files:
        _place(source, work / relative)
    counts["files"] = len(content.files)
    descriptor = {"resources": _resources(content), "profile": PROFILE_URL, **content.properties}
    (work / "datapackage.json").write_text(
        json.dumps(descriptor, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return counts


def _frictionless_available() -> bool:
    try:
        import frictionless  # noqa: F401
    except ImportError:
        return False
    return True


def write_package(
    content: PackageContent, out_dir: Path, *, overwrite: bool = False, validate: bool = True
) -> Written:
    """Write ``content`` as a Camtrap DP package at ``out_dir``; returns its descriptor path."""
    out_dir = Path(os.path.abspath(out_dir))
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise ExportError(f"{out_dir} exists and is not empty (use --overwrite to replace it)")
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    except OSError as exc:
        raise ExportError(f"cannot write the package under {out_dir.parent}: {exc}") from exc
    notes = list(content.notes)
    try:
        counts = _fill(content, work)
        validated = validate and _frictionless_available()
        if validate and not validated:
            notes.append("not validated: frictionless is not installed (pip install frictionless)")
        if validated:
            result = validate_package(work / "datapackage.json")
            if not result.valid:
                raise ExportError("the package would not be valid Camtrap DP:\n" + result.summary())
        _swap_into_place(work, out_dir)
    except OSError as exc:
        shutil.rmtree(work, ignore_errors=True)
        raise ExportError(f"writing the package failed, nothing was left behind: {exc}") from exc
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return Written(out_dir / "datapackage.json", counts, validated, notes)


def _swap_into_place(work: Path, out_dir: Path) -> None:
    os.chmod(work, 0o755)  # mkdtemp makes it 0700; a published package should be readable
    if not out_dir.exists():
        os.rename(work, out_dir)
        return
    # Replace an existing package: old aside, new in, old gone. Between the two renames the
    # destination is briefly absent, never half-written.
    old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
    os.rename(out_dir, old / "package")
    os.rename(work, out_dir)
    shutil.rmtree(old, ignore_errors=True)
