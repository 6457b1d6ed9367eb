"""A model pack made ready to serve: the verified pack (``device.contracts.pack``) with what
the engine needs in memory — the model bytes, labels and taxa in output order, thresholds
merged over the built-in defaults, preprocessing, the blank-threshold calibration table (if the
pack carries one) and the golden images for the self-test.

The pack format itself (manifest rules, checksums, tars, labels, writing a pack) is the shared
contract; this module re-exports the names the vision room has always imported from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from device.contracts.calibration import Calibration, CalibrationError
from device.contracts.manifest import FORMAT, LABEL_FORMATS, PackError
from device.contracts.pack import MAX_PACK_BYTES, file_entry, parse_labels, read_pack, write_pack
from device.contracts.taxa import Taxon

__all__ = [
    "DEFAULT_THRESHOLDS",
    "FORMAT",
    "LABEL_FORMATS",
    "MAX_PACK_BYTES",
    "Golden",
    "ModelPack",
    "PackError",
    "file_entry",
    "load_pack",
    "parse_labels",
    "write_pack",
]

DEFAULT_THRESHOLDS = {"species": 0.65, "rollup": 0.65, "blank": 0.95, "animal": 0.2}


@dataclass(frozen=True)
class Golden:
    name: str
    content: bytes
    expect_top: tuple[str, ...]
    top_k: int


@dataclass
class ModelPack:
    """A verified pack, fully in memory: loading it again is not needed to serve."""

    path: Path
    manifest: dict[str, Any]  # manifest.json as written (and signed)
    name: str
    version: str
    model_content: bytes
    labels: list[str]  # label ids in output order
    display_names: list[str]  # human-readable label, same order
    taxa: list[Taxon]  # one per label, same order
    geofence: dict[str, Any]
    thresholds: dict[str, float]
    resize: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    output: str  # probabilities | logits
    golden: list[Golden] = field(default_factory=list)
    calibration: Calibration | None = None  # calibration.json (device.contracts.calibration)

    @property
    def classified_by(self) -> str:
        return f"{self.name}@{self.version}"


def load_pack(
    path: Path, agent_version: str | None = None, now: datetime | None = None
) -> ModelPack:
    """Read and verify a pack (``device.contracts.pack.read_pack``); any problem raises
    ``PackError`` naming the pack."""
    contents = read_pack(path, agent_version, now)
    manifest = contents.manifest
    model = manifest.model
    calibration = None
    if manifest.calibration is not None:
        try:
            calibration = Calibration.from_json(contents.files[manifest.calibration.file])
        except CalibrationError as exc:
            raise PackError(f"model pack {path}: {manifest.calibration.file}: {exc}") from None
    return ModelPack(
        path=contents.path,
        manifest=contents.document,
        name=manifest.name,
        version=manifest.version,
        model_content=contents.files[model.file],
        labels=[label_id for label_id, _ in contents.labels],
        display_names=[display for _, display in contents.labels],
        taxa=contents.taxa,
        geofence=contents.geofence,
        thresholds={**DEFAULT_THRESHOLDS, **manifest.thresholds},
        resize=model.preprocess.resize,
        mean=model.preprocess.mean,
        std=model.preprocess.std,
        output=model.output,
        golden=[
            Golden(
                name=g.file,
                content=contents.files[g.file],
                expect_top=tuple(g.expect_top),
                top_k=g.top_k,
            )
            for g in manifest.golden
        ],
        calibration=calibration,
    )
