"""A model pack made ready to serve: the verified pack (``device.contracts.pack``) with what
the engine needs in memory — the model bytes, labels and taxa in output order, thresholds
merged over the built-in defaults, preprocessing, the blank-threshold calibration table (if the
pack carries one) and the golden images for the self-test.

A head pack (format 2, docs/model-pack.md) has no model of its own: it names its backbone by
the sha256 of the backbone's model file. ``load_pack`` finds that backbone (the places it
looks are in ``backbone_candidates``), verifies it as fully as the head, and serves the pair as
one ``ModelPack``: model, preprocessing and embedding from the backbone; labels, kinds,
thresholds, calibration and golden images from the head. A backbone pack loads (``camtrap
model info`` describes it) but gives no verdict alone; the engine refuses to serve it.

The pack format itself (manifest rules, checksums, tars, labels, writing a pack) is the shared
contract; this module re-exports the names the vision room has always imported from here.
"""

from __future__ import annotations

import contextlib
import json
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from device.contracts.calibration import Calibration, CalibrationError
from device.contracts.head import HeadWeights
from device.contracts.manifest import (
    FORMAT,
    LABEL_FORMATS,
    BackboneRef,
    EmbeddingSpec,
    Manifest,
    PackError,
)
from device.contracts.pack import (
    DEFAULT_PACK_DIR,
    MAX_PACK_BYTES,
    PackContents,
    PackSource,
    file_entry,
    parse_labels,
    read_pack,
    write_pack,
)
from device.contracts.taxa import Taxon

__all__ = [
    "DEFAULT_THRESHOLDS",
    "FORMAT",
    "LABEL_FORMATS",
    "MAX_PACK_BYTES",
    "Golden",
    "ModelPack",
    "PackError",
    "backbone_candidates",
    "file_entry",
    "load_pack",
    "parse_labels",
    "stated_manifest",
    "stated_model",
    "stated_model_sha256",
    "write_pack",
]

DEFAULT_THRESHOLDS = {"species": 0.65, "rollup": 0.65, "blank": 0.95, "animal": 0.2}
# Sibling files that may be packs; any other file beside a head is not even opened.
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")


@dataclass(frozen=True)
class Golden:
    name: str
    content: bytes
    expect_top: tuple[str, ...]
    top_k: int


@dataclass
class ModelPack:
    """A verified pack, fully in memory: loading it again is not needed to serve.

    For a head, ``name``/``version``/``manifest`` are the head's (OTA and anti-rollback go by
    them) and the ``model_*`` fields describe the backbone it runs on."""

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
    kind: str = "full"  # full | backbone | head
    embedding: EmbeddingSpec | None = None  # the model's embedding output (model.embedding)
    # The manifest's ``model`` section of the pack whose model runs (the backbone's for a head).
    model_section: dict[str, Any] = field(default_factory=dict)
    model_sha256: str = ""  # sha256 of the model file that runs
    model_from: str = ""  # "name@version" of the pack whose model runs
    head: HeadWeights | None = None  # a head's weights, applied to the embedding
    backbone_path: Path | None = None  # where a head's backbone was found

    @property
    def classified_by(self) -> str:
        """``name@version``; for a head ``backbone@version+head@version`` (the backbone that
        was actually found), what every observation it makes is stamped with."""
        own = f"{self.name}@{self.version}"
        return f"{self.model_from}+{own}" if self.head is not None else own


def load_pack(
    path: Path,
    agent_version: str | None = None,
    now: datetime | None = None,
    backbones: Sequence[Path] = (),
) -> ModelPack:
    """Read and verify a pack (``device.contracts.pack.read_pack``); any problem raises
    ``PackError`` (one line naming the pack). A head's backbone is looked for in
    ``backbones`` first, then beside the head, then in the shipped default pack."""
    path = Path(path)
    contents = read_pack(path, agent_version, now)
    manifest = contents.manifest
    runs = contents
    if manifest.backbone is not None:
        runs = _find_backbone(path, manifest, manifest.backbone, agent_version, now, backbones)
    model = runs.manifest.model
    assert model is not None  # a head's backbone is checked to have one; others must
    calibration = None
    if manifest.calibration is not None:
        try:
            calibration = Calibration.from_json(contents.files[manifest.calibration.file])
        except CalibrationError as exc:
            raise PackError(f"model pack {path}: {manifest.calibration.file}: {exc}") from None
    # A head may carry its own geofence; without one, the backbone's rules still apply.
    geofence = contents.geofence if manifest.geofence is not None else runs.geofence
    return ModelPack(
        path=contents.path,
        manifest=contents.document,
        name=manifest.name,
        version=manifest.version,
        model_content=runs.files[model.file],
        labels=[label_id for label_id, _ in contents.labels],
        display_names=[display for _, display in contents.labels],
        taxa=contents.taxa,
        geofence=geofence,
        thresholds={**DEFAULT_THRESHOLDS, **manifest.thresholds},
        resize=model.preprocess.resize,
        mean=model.preprocess.mean,
        std=model.preprocess.std,
        # A head's scores are its softmax, whatever the backbone's own output is.
        output="probabilities" if contents.head is not None else model.output,
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
        kind=manifest.kind,
        embedding=model.embedding,
        model_section=dict(runs.document.get("model") or {}),
        model_sha256=runs.manifest.files[model.file].sha256,
        model_from=f"{runs.manifest.name}@{runs.manifest.version}",
        head=contents.head,
        backbone_path=runs.path if runs is not contents else None,
    )


# -- finding a head's backbone ------------------------------------------------------------------


def backbone_candidates(head: Path, backbones: Sequence[Path] = ()) -> Iterator[Path]:
    """Where a head's backbone may be, in the order they are tried: ``backbones``, the
    head's siblings (the OTA layout keeps every installed pack under ``packs/``), the shipped
    default pack. Each place once; never the head itself."""
    seen = {_key(head)}
    siblings: list[Path] = []
    with contextlib.suppress(OSError):  # a head in an unreadable folder still has the others
        siblings = sorted(
            p
            for p in head.parent.iterdir()
            if not p.name.startswith(".")
            and (p.is_dir() or (p.is_file() and p.name.endswith(_TAR_SUFFIXES)))
        )
    for candidate in [*map(Path, backbones), *siblings, DEFAULT_PACK_DIR]:
        key = _key(candidate)
        if key not in seen:
            seen.add(key)
            yield candidate


def _key(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:
        return path.absolute()


def stated_manifest(pack: Path) -> Manifest | None:
    """A pack's manifest as its ``manifest.json`` states it, from a directory or a tar (None:
    not a readable pack). Cheap: no file is hashed; a pack is verified in full only once it is
    chosen."""
    try:
        if pack.is_dir():
            document = json.loads((pack / "manifest.json").read_bytes())
        elif pack.is_file() and tarfile.is_tarfile(pack):
            document = json.loads(PackSource(pack).read("manifest.json"))
        else:
            return None
        return Manifest.from_document(document)
    except (OSError, ValueError, tarfile.TarError):  # PackError and JSON errors included
        return None


def stated_model(pack: Path) -> tuple[str, str] | None:
    """``(sha256 of its model file, "name@version")`` as a pack's manifest states them (None:
    a head, which has no model, or not a readable pack)."""
    manifest = stated_manifest(pack)
    sha = None if manifest is None or manifest.kind == "head" else manifest.model_sha256
    return None if sha is None or manifest is None else (sha, f"{manifest.name}@{manifest.version}")


def stated_model_sha256(pack: Path) -> str | None:
    """The sha256 a pack's manifest states for its own model file (``stated_model``)."""
    stated = stated_model(pack)
    return None if stated is None else stated[0]


def _find_backbone(
    head_path: Path,
    head: Manifest,
    ref: BackboneRef,
    agent_version: str | None,
    now: datetime | None,
    backbones: Sequence[Path],
) -> PackContents:
    problems: list[str] = []
    named = f"{ref.name}@{ref.version}"
    matches = [
        (candidate, stated[1])
        for candidate in backbone_candidates(head_path, backbones)
        if (stated := stated_model(candidate)) is not None and stated[0] == ref.sha256
    ]
    # The same model file may ship in several packs (a new version with new thresholds): the
    # one the head names is preferred, so classified_by says what the trainer fitted it on.
    matches.sort(key=lambda match: match[1] != named)
    for candidate, _ in matches:
        try:
            found = read_pack(candidate, agent_version, now)
        except PackError as exc:  # the manifest says so but the files do not: keep looking
            problems.append(str(exc))
            continue
        model = found.manifest.model
        assert model is not None  # stated_model_sha256 answers only for packs with a model
        if model.embedding is None or model.embedding.size != ref.embedding_size:
            has = "none" if model.embedding is None else f"size {model.embedding.size}"
            problems.append(
                f"{candidate} has the model but its model.embedding is {has}, "
                f"the head needs size {ref.embedding_size}"
            )
            continue
        return found
    places = dict.fromkeys([*map(str, backbones), f"{head_path.parent}/*", str(DEFAULT_PACK_DIR)])
    why = f" ({'; '.join(problems)})" if problems else ""
    raise PackError(
        f"model pack {head_path}: head {head.name}@{head.version} needs backbone "
        f"{ref.name}@{ref.version} (sha256 {ref.sha256[:12]}…), not found in: "
        f"{', '.join(places)}{why}"
    )
