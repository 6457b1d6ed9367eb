"""The head pack ``camtrap-cloud train`` writes (kind ``head``, docs/model-pack.md).

It names its backbone by the sha256 of the backbone's model file and carries only what the
trap needs besides that model: SpeciesNet labels, the kinds of its classes, the int8 (or
float16) weights, thresholds, the calibration table measured on the validation part, golden
images for the self-test, and the provenance of the fit under ``training``. Unsigned: it is
signed like any pack (``camtrap-cloud model sign``), which also gives it its expiry.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from cloud_stub.training.classes import TrainClass
from cloud_stub.training.golden import Golden
from device.contracts.calibration import Calibration
from device.contracts.head import HeadWeights
from device.contracts.pack import PackContents, write_pack

__all__ = ["HEADS_SINCE", "LABELS_FILE", "WEIGHTS_FILE", "write_head_pack"]

# The first agent release that serves heads (format 2); older agents refuse format 2 anyway.
HEADS_SINCE = "0.1.0"
LABELS_FILE = "labels.txt"
WEIGHTS_FILE = "head.npz"
CALIBRATION_FILE = "calibration.json"
# When the backbone states none: the default pack's species and rollup thresholds, and the
# share of presence evidence below which a not-blank frame is "unknown".
DEFAULT_THRESHOLDS = {"species": 0.65, "rollup": 0.65, "animal": 0.2}


def labels_text(classes: Sequence[TrainClass]) -> str:
    return "".join(c.label_line() + "\n" for c in classes)


def thresholds_for(backbone: PackContents, blank: float | None) -> dict[str, float]:
    """The backbone's species, rollup and animal thresholds; ``blank`` is the calibrated
    threshold at the target recall (the table in calibration.json takes precedence on the
    trap; 1.0 when the validation part could not support the target)."""
    own = backbone.manifest.thresholds
    chosen = {k: float(own.get(k, v)) for k, v in DEFAULT_THRESHOLDS.items()}
    return {**chosen, "blank": 1.0 if blank is None else float(blank)}


def write_head_pack(
    out: Path,
    *,
    name: str,
    version: str,
    created: datetime,
    backbone: PackContents,
    classes: Sequence[TrainClass],
    head: HeadWeights,
    calibration: Calibration,
    blank_threshold: float | None,
    golden: Sequence[Golden],
    training: dict[str, Any],
    description: str,
) -> Path:
    spec = backbone.manifest
    assert spec.model is not None and spec.model.embedding is not None
    files: dict[str, bytes] = {
        LABELS_FILE: labels_text(classes).encode(),
        WEIGHTS_FILE: head.to_bytes(),
        CALIBRATION_FILE: calibration.to_json(),
        **{g.file: g.jpeg for g in golden},
    }
    manifest: dict[str, Any] = {
        "kind": "head",
        "name": name,
        "version": version,
        "created": created.replace(microsecond=0).isoformat(),
        "min_agent_version": HEADS_SINCE,
        "expires": None,
        "description": description,
        "backbone": {
            "name": spec.name,
            "version": spec.version,
            "sha256": spec.model_sha256,
            "embedding_size": spec.model.embedding.size,
        },
        "head": {"file": WEIGHTS_FILE, "weights": head.storage, "kinds": [c.kind for c in classes]},
        "labels": {"file": LABELS_FILE, "format": "speciesnet"},
        "thresholds": thresholds_for(backbone, blank_threshold),
        "calibration": {"file": CALIBRATION_FILE},
        "golden": [
            {"file": g.file, "expect_top": [g.expect], "top_k": g.top_k, "source": g.source}
            for g in golden
        ],
        "training": training,
    }
    return write_pack(out, manifest, files)
