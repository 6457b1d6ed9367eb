"""Read an existing Camtrap DP package back in, so it can be checked and written out again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cloud_stub.export.package import ExportError, PackageContent
from cloud_stub.export.tables import TABLES, read_table

_TABLE_KEYS = {"name", "path", "profile", "format", "mediatype", "encoding", "schema"}


def read_package(descriptor_path: Path) -> PackageContent:
    """Rows as strings (written back unchanged), properties, and the media files it holds."""
    root = descriptor_path.parent
    try:
        descriptor: dict[str, Any] = json.loads(descriptor_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExportError(f"cannot read {descriptor_path}: {exc}") from exc
    resources = {r.get("name"): r for r in descriptor.get("resources", [])}
    missing = [t for t in TABLES if t not in resources]
    if missing:
        raise ExportError(f"{descriptor_path} lacks the Camtrap DP table(s): {', '.join(missing)}")
    tables = {t: read_table(root / resources[t]["path"]) for t in TABLES}
    files: list[tuple[Path, str]] = []
    absent = 0
    for row in tables["media"]:
        path = row.get("filePath") or ""
        if "://" in path:
            continue  # a URL: nothing to copy
        source = root / path
        if source.is_file() and source.resolve().is_relative_to(root.resolve()):
            files.append((source, path))
        else:
            absent += 1
    properties = {k: v for k, v in descriptor.items() if k not in ("resources", "profile")}
    extra = [r for n, r in resources.items() if n not in TABLES]
    notes = (
        [f"{absent} media file(s) referenced by relative path are not in the package"]
        if absent
        else []
    )
    return PackageContent(
        properties=properties,
        deployments=tables["deployments"],
        media=tables["media"],
        observations=tables["observations"],
        files=files,
        extra_resources=extra,
        notes=notes,
    )
