"""Turn a Vertex AI AutoML Edge image-classification export into a model pack.

An export holds ``model.tflite``, ``dict.txt`` (labels, one per line, in output order) and
``tflite_metadata.json``. The model's tensors are read from the interpreter, not from the
metadata: the metadata is kept in the pack for provenance only. AutoML labels are plain names,
so their kind (animal, human, vehicle, blank) is guessed from the name; taxonomy fields stay
empty until someone maps the names to taxa (docs/model-pack.md).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

import device
from device.vision.pack import PackError, parse_labels, write_pack
from device.vision.runtime import Model, ModelError
from device.vision.taxa import guess_kind

REQUIRED = ("model.tflite", "dict.txt", "tflite_metadata.json")


def _normalisation(model: Model) -> tuple[float, float]:
    """Mean and std such that raw pixels are exactly what a quantised input expects."""
    spec = model.input
    if spec.quantized:
        shift = 0 if spec.dtype == np.uint8 else 128
        return float(spec.zero_point + shift), 1.0 / spec.scale
    if spec.dtype != np.float32:
        return (0.0 if spec.dtype == np.uint8 else 128.0), 1.0
    # Float AutoML Edge models take pixels scaled to [-1, 1].
    return 127.5, 127.5


def build_manifest(name: str, version: str, model: Model, source: str) -> dict[str, Any]:
    mean, std = _normalisation(model)
    return {
        "name": name,
        "version": version,
        "created": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "min_agent_version": device.__version__,
        "expires": None,
        "description": f"Imported from an AutoML Edge export ({model.num_classes} labels)",
        "license": "as agreed with the model's owner",
        "source": source,
        "model": {
            "file": "model.tflite",
            "input": {
                "width": model.input_size[0],
                "height": model.input_size[1],
                "channels": 3,
                "color": "RGB",
            },
            # AutoML Edge resizes the whole image to the input size.
            "preprocess": {"resize": "squash", "mean": [mean] * 3, "std": [std] * 3},
            "output": "probabilities",
        },
        "labels": {"file": "labels.txt", "format": "plain"},
        "taxonomy": {"file": "taxonomy.json"},
        "thresholds": {"species": 0.65, "rollup": 0.65, "blank": 0.95, "animal": 0.2},
        "golden": [],
    }


def import_automl(
    export_dir: Path, out_dir: Path, name: str | None = None, version: str = "1.0.0"
) -> Path:
    """Write a verified pack to ``out_dir`` (which must not exist or be empty)."""
    export_dir, out_dir = Path(export_dir), Path(out_dir)
    missing = [n for n in REQUIRED if not (export_dir / n).is_file()]
    if missing:
        raise PackError(f"{export_dir}: not an AutoML Edge export (missing {', '.join(missing)})")
    content = (export_dir / "model.tflite").read_bytes()
    try:
        model = Model(content)
    except ModelError as exc:
        raise PackError(f"{export_dir / 'model.tflite'}: {exc}") from None
    try:
        metadata = json.loads((export_dir / "tflite_metadata.json").read_text("utf-8"))
        labels = [
            lid for lid, _ in parse_labels((export_dir / "dict.txt").read_text("utf-8"), "plain")
        ]
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PackError(f"{export_dir}: unreadable metadata or dict.txt ({exc})") from exc
    if len(labels) != model.num_classes:
        raise PackError(
            f"{export_dir}: dict.txt has {len(labels)} labels "
            f"but the model outputs {model.num_classes}"
        )
    if len(set(labels)) != len(labels) or not all(labels):
        raise PackError(f"{export_dir}: dict.txt has empty or repeated labels")
    taxonomy = [
        {
            "label": lab,
            "kind": guess_kind(lab),
            "taxonomy": "",
            "scientific_name": None,
            "common_name": lab,
            "rank": None,
        }
        for lab in labels
    ]
    files = {
        "model.tflite": content,
        "labels.txt": ("\n".join(labels) + "\n").encode(),
        "taxonomy.json": json.dumps(taxonomy, indent=1).encode(),
        "tflite_metadata.json": json.dumps(metadata, indent=1).encode(),
    }
    manifest = build_manifest(
        name or export_dir.resolve().name, version, model, f"automl-edge:{export_dir.name}"
    )
    return write_pack(out_dir, manifest, files)
