"""Calibration tables and packs that carry one, built for a test (no real measurement)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from device.contracts.calibration import FORMAT, TARGET_RECALLS, Calibration
from device.vision.pack import write_pack


def a_table(
    thresholds: tuple[float | None, ...], name: str = "test set", level: str = "event"
) -> Calibration:
    """A well-formed table with one threshold per target recall (0.9, 0.95, 0.98, 0.99)."""
    assert len(thresholds) == len(TARGET_RECALLS)
    return Calibration.model_validate(
        {
            "format": FORMAT,
            "measured_on": {
                "name": name,
                "level": level,
                "n_not_blank": 500,
                "n_blank": 500,
                "created": datetime(2026, 12, 1, tzinfo=UTC),
            },
            "points": [
                {
                    "target_recall": target,
                    "threshold": threshold,
                    "recall": 1.0,
                    "blanks_removed": 0.5,
                    "reason": None if threshold is not None else "too few",
                }
                for target, threshold in zip(TARGET_RECALLS, thresholds, strict=True)
            ],
        }
    )


def table_document(table: Calibration) -> dict[str, Any]:
    return json.loads(table.to_json())


def pack_with_calibration(base: Path, out: Path, table: Calibration | bytes) -> Path:
    """A copy of the pack ``base`` that carries ``table`` as its calibration.json."""
    manifest = json.loads((base / "manifest.json").read_text())
    files = {name: (base / name).read_bytes() for name in manifest["files"]}
    files["calibration.json"] = table if isinstance(table, bytes) else table.to_json()
    manifest = {k: v for k, v in manifest.items() if k not in ("format", "files", "signature")}
    manifest["calibration"] = {"file": "calibration.json"}
    return write_pack(out, manifest, files)
