"""Camtrap DP 1.0.2 tables: column order (from the official schemas) and cell formatting."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from cloud_stub.export.validate import load_table_schema

TABLES = ("deployments", "media", "observations")


@cache
def columns(table: str) -> tuple[str, ...]:
    """The table's field names in the schema's order (the order the standard publishes)."""
    return tuple(f["name"] for f in load_table_schema(table)["fields"])


def camtrap_datetime(value: str | datetime | None) -> str:
    """ISO 8601 with offset, whole seconds: the schemas' format is ``%Y-%m-%dT%H:%M:%S%z``.

    A naive datetime cannot be exported honestly (its offset is unknown), so it is refused.
    """
    if value is None or value == "":
        return ""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        raise ValueError(f"datetime without an offset: {value!r}")
    return moment.isoformat(timespec="seconds")


def cell(value: Any) -> str:
    """One CSV cell: empty for missing, lower-case booleans, JSON for objects."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format(value, ".10g")  # no "1.0000000002" noise from SQLite REALs
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def write_table(path: Path, table: str, rows: Iterable[Mapping[str, Any]]) -> int:
    """Write ``rows`` (keyed by Camtrap DP field names) as the table's CSV; returns the count."""
    names = columns(table)
    count = 0
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(names)
        for row in rows:
            extra = set(row) - set(names)
            if extra:
                raise ValueError(f"{table}: fields not in Camtrap DP 1.0.2: {sorted(extra)}")
            writer.writerow([cell(row.get(name)) for name in names])
            count += 1
    return count


def read_table(path: Path) -> list[dict[str, str | None]]:
    """A Camtrap DP CSV as dicts of strings (empty cells become ``None``)."""
    with path.open(newline="", encoding="utf-8") as handle:
        return [
            {k: (v if v != "" else None) for k, v in row.items()} for row in csv.DictReader(handle)
        ]
