"""``camtrap-cloud train`` from labelled images to a head pack, step by step (docs/learning.md).

1. labelled images: reviewed frames of an ingest store, or a labelled folder;
2. features: the backbone's embedding of the trap's full crop of each, cached;
3. split by deployment or event; balance the training part;
4. fit the head and quantise it;
5. blank scores of the head and of the serving model on the same frames; both calibrated on
   the validation part and judged on the reported part (test, or validation when there are
   too few groups for both);
6. refuse a head strictly worse than the serving model, unless forced; else write the pack
   and the report.

Problems the user can act on raise ``TrainingError``; a refused head is a result, not an
error: nothing is written and the caller says why.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from cloud_stub.training.balance import balance
from cloud_stub.training.cache import EmbeddingCache, default_cache_dir
from cloud_stub.training.classes import TrainClass
from cloud_stub.training.embeddings import Embedder
from cloud_stub.training.errors import TrainingError
from cloud_stub.training.evaluate import (
    BlankFilter,
    ClassFigures,
    blank_filter,
    per_class,
    reasons_worse,
)
from cloud_stub.training.features import Features, features_for
from cloud_stub.training.fit import fit_head
from cloud_stub.training.folder_source import folder_images
from cloud_stub.training.golden import choose_golden
from cloud_stub.training.ingest_source import ingest_images
from cloud_stub.training.labelled import LabelledImage, LabelledSet
from cloud_stub.training.pack_writer import write_head_pack
from cloud_stub.training.report import write_report
from cloud_stub.training.scores import blank_scores, event_items
from cloud_stub.training.split import PARTS, Split, split_groups
from device.contracts.head import HeadWeights
from device.contracts.manifest import PackError
from device.contracts.pack import DEFAULT_PACK_DIR, PackContents, read_pack
from device.contracts.recall import Scored, calibrate
from device.contracts.release import VERSION
from device.contracts.versions import parse_version

__all__ = ["TrainConfig", "TrainResult", "run_training"]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class TrainConfig:
    out: Path
    backbone: Path = DEFAULT_PACK_DIR
    root: Path | None = None  # an ingest store ...
    db_url: str | None = None  # ... in PostgreSQL when given (else <root>/ingest.sqlite)
    deployment: str | None = None
    country: str | None = None
    registry: Path | None = None  # ... whose deployments' countries the registry knows
    images: Path | None = None  # ... or a labelled folder
    labels: Path | None = None
    serving: Path | None = None  # default: the backbone pack (a full pack's own classifier)
    site_head: bool = False
    name: str | None = None
    version: str = "1.0.0"
    target_recall: float = 0.98
    min_per_class: int = 5
    max_per_class: int = 1000
    seed: int = 0
    c: float = 1.0
    weights: str = "int8"
    cache: Path | None = None
    report: Path | None = None  # default: <out>.report
    force: bool = False
    threads: int = 2
    now: Callable[[], datetime] = _utc_now

    @property
    def report_dir(self) -> Path:
        return self.report or self.out.with_name(self.out.name + ".report")


@dataclass
class TrainResult:
    report: dict[str, Any]
    worse: list[str]  # why the head is worse than the serving model (empty: it is not)
    pack: Path | None = None  # None: nothing was written
    report_files: list[Path] = field(default_factory=list)

    @property
    def written(self) -> bool:
        return self.pack is not None


def _read(path: Path, option: str) -> PackContents:
    try:
        return read_pack(path)
    except PackError as exc:
        raise TrainingError(f"{option}: {exc}") from None


def _labelled(config: TrainConfig) -> LabelledSet:
    if config.root is not None:
        return ingest_images(
            config.root,
            deployment=config.deployment,
            country=config.country,
            registry=config.registry,
            url=config.db_url,
        )
    assert config.images is not None and config.labels is not None
    return folder_images(config.images, config.labels)


def _check(config: TrainConfig) -> None:
    """What can be refused before a photo is read."""
    try:
        parse_version(config.version)
    except ValueError as exc:
        raise TrainingError(f"--version {config.version!r}: {exc}") from None
    if config.report_dir.absolute().is_relative_to(config.out.absolute()):
        raise TrainingError(
            f"--report {config.report_dir}: not inside --out {config.out} (the pack a trap "
            "downloads must hold only the pack)"
        )
    if config.out.exists() and (not config.out.is_dir() or any(config.out.iterdir())):
        raise TrainingError(f"--out {config.out}: exists and is not an empty directory")


def _head_name(config: TrainConfig, labelled: LabelledSet) -> str:
    if config.name:
        return config.name
    hint = re.sub(r"[^a-z0-9._-]+", "-", labelled.name_hint.lower()).strip("-.")
    return f"head-{hint or 'site'}"


def _serving_blank(
    serving: PackContents,
    backbone: PackContents,
    features: Features,
    paths: Sequence[Path],
    cache: EmbeddingCache,
    threads: int,
) -> np.ndarray:
    """The serving model's full-crop blank score of every usable frame."""
    kinds = [t.kind for t in serving.taxa]
    if serving.kind == "backbone":
        raise TrainingError(f"--serving {serving.path}: a backbone gives no verdict to compare")
    if serving.head is not None:
        ref = serving.manifest.backbone
        assert ref is not None
        if ref.sha256 != backbone.manifest.model_sha256:
            raise TrainingError(
                f"--serving {serving.path}: that head runs on backbone {ref.name}@{ref.version}"
                f" (sha256 {ref.sha256[:12]}…), not on --backbone {backbone.path}"
            )
        return blank_scores(serving.head.apply(features.embeddings), kinds)
    if serving.manifest.model_sha256 == backbone.manifest.model_sha256:
        return blank_scores(features.scores, kinds)
    # Another model: its own invokes on the same frames (cached like the backbone's).
    own = features_for(paths, Embedder(serving, threads=threads), cache)
    scores = dict(zip(own.usable, own.scores, strict=True))
    if any(i not in scores for i in features.usable):
        raise TrainingError(f"--serving {serving.path}: could not score every usable photo")
    return blank_scores(np.stack([scores[i] for i in features.usable]), kinds)


def _counts(images: Sequence[LabelledImage], positions: Sequence[int]) -> Counter[str]:
    return Counter(images[k].cls.name for k in positions)


def _class_rows(
    seen: Sequence[TrainClass],
    images: Sequence[LabelledImage],
    at: dict[str, list[int]],
    used: Sequence[int],
    split: Split,
    figures: dict[str, Any],
) -> list[dict[str, Any]]:
    counts = {part: _counts(images, at[part]) for part in PARTS}
    used_counts = _counts(images, used)
    reported = counts[split.test_part]
    rows = []
    for cls in seen:
        found = figures.get(cls.name)
        rows.append(
            {
                "name": cls.name,
                "display": cls.display,
                "kind": cls.kind,
                "label": cls.label_line(),
                "n": {
                    "train": counts["train"][cls.name],
                    "train_used": used_counts[cls.name],
                    "validation": counts["validation"][cls.name],
                    "test": reported[cls.name],
                },
                "precision": None if found is None else found.precision,
                "recall": None if found is None else found.recall,
                "in_head": cls.name in figures,
            }
        )
    return rows


def _filters(
    scores: np.ndarray,
    images: Sequence[LabelledImage],
    at: dict[str, list[int]],
    split: Split,
    target: float,
) -> tuple[BlankFilter, list[Scored]]:
    validation = event_items(scores[at["validation"]], [images[k] for k in at["validation"]])
    part = at[split.test_part]
    reported = event_items(scores[part], [images[k] for k in part])
    return blank_filter(validation, reported, target), validation


def _prepared(config: TrainConfig) -> LabelledSet:
    """The labelled photos, as a site head's classes when asked; refused when they cannot
    train anything."""
    labelled = _labelled(config)
    if config.site_head:
        if len(labelled.deployments) > 1:
            raise TrainingError(
                f"--site-head trains on one site: the labels span {len(labelled.deployments)} "
                "deployments (give --deployment D)"
            )
        labelled = labelled.as_site_head()
    if not labelled.images:
        left = ", ".join(f"{n} {why}" for why, n in labelled.left_out.most_common()) or "none"
        raise TrainingError(f"no usable labelled photo in {labelled.source} (left out: {left})")
    seen = labelled.classes()
    if len(seen) < 2:
        raise TrainingError(
            f"need at least two classes to train a head; {labelled.source} labels every "
            f"usable photo {seen[0].display!r}"
        )
    return labelled


def _parts(images: Sequence[LabelledImage], seed: int) -> tuple[Split, dict[str, list[int]]]:
    """The split, and the positions of the photos of each part."""
    split = split_groups(images, seed)
    at: dict[str, list[int]] = {p: [] for p in PARTS}
    for k, image in enumerate(images):
        at[split.part(image)].append(k)
    if split.validation_is_test:
        at["test"] = at["validation"]
    if not at["validation"]:
        raise TrainingError(
            f"too few events to hold any out for validation ({len(split.part_of)} "
            f"{split.by}s; a class needs at least 2 events)"
        )
    return split, at


@dataclass
class _Judged:
    """The quantised head's figures beside the serving model's."""

    probabilities: np.ndarray  # [n, classes] of every usable photo
    head: BlankFilter
    serving: BlankFilter
    validation: list[Scored]  # the head's validation events: its calibration set
    figures: list[ClassFigures]
    confusion: np.ndarray
    worse: list[str]


def _judge(
    head: HeadWeights,
    classes: Sequence[TrainClass],
    features: Features,
    serving_blank: np.ndarray,
    images: Sequence[LabelledImage],
    split: Split,
    at: dict[str, list[int]],
    target: float,
) -> _Judged:
    probabilities = head.apply(features.embeddings)
    head_blank = blank_scores(probabilities, [c.kind for c in classes])
    head_filter, validation = _filters(head_blank, images, at, split, target)
    serving_filter, _ = _filters(serving_blank, images, at, split, target)
    index = {c.name: j for j, c in enumerate(classes)}
    reported = [k for k in at[split.test_part] if images[k].cls.name in index]
    truth = np.array([index[images[k].cls.name] for k in reported], dtype=np.int64)
    predicted = probabilities[reported].argmax(axis=1) if reported else np.zeros(0, np.int64)
    figures, confusion = per_class(
        truth, predicted, [c.name for c in classes], [c.kind for c in classes]
    )
    return _Judged(
        probabilities,
        head_filter,
        serving_filter,
        validation,
        figures,
        confusion,
        reasons_worse(head_filter, serving_filter),
    )


def run_training(config: TrainConfig) -> TrainResult:
    _check(config)
    backbone = _read(config.backbone, "--backbone")
    serving = backbone if config.serving is None else _read(config.serving, "--serving")
    labelled = _prepared(config)
    seen = labelled.classes()
    name = _head_name(config, labelled)
    classified_by = f"{backbone.manifest.name}@{backbone.manifest.version}+{name}@{config.version}"

    embedder = Embedder(backbone, threads=config.threads)
    cache = EmbeddingCache(config.cache or default_cache_dir(config.root))
    try:
        paths = [i.path for i in labelled.images]
        features = features_for(paths, embedder, cache)
        if not features.usable:
            raise TrainingError(f"none of the {len(paths)} labelled photos could be decoded")
        serving_blank = _serving_blank(serving, backbone, features, paths, cache, config.threads)
    finally:
        cache.close()
    images = [labelled.images[i] for i in features.usable]
    split, at = _parts(images, config.seed)

    balanced = balance(
        [images[k] for k in at["train"]], config.min_per_class, config.max_per_class, config.seed
    )
    used = [at["train"][k] for k in balanced.kept]
    head_classes = [c for c in seen if c.name in balanced.after]
    if len(head_classes) < 2:
        have = ", ".join(f"{c} {n}" for c, n in sorted(balanced.before.items()))
        raise TrainingError(
            f"need at least two classes with >= {config.min_per_class} training photos "
            f"each (--min-per-class); the training part has: {have}"
        )
    index = {c.name: j for j, c in enumerate(head_classes)}
    fitted = fit_head(
        features.embeddings[used],
        np.array([index[images[k].cls.name] for k in used]),
        len(head_classes),
        c=config.c,
        storage=config.weights,
        seed=config.seed,
    )
    judged = _judge(
        fitted.head, head_classes, features, serving_blank, images, split, at, config.target_recall
    )
    forced = bool(judged.worse) and config.force
    report: dict[str, Any] = {
        "head": f"{name}@{config.version}",
        "classified_by": classified_by,
        "site_head": config.site_head,
        "backbone": {
            "name": backbone.manifest.name,
            "version": backbone.manifest.version,
            "sha256": backbone.manifest.model_sha256,
        },
        "serving": serving.manifest.classified_by,
        "source": labelled.source,
        "event_rule": labelled.event_rule,
        "left_out": dict(labelled.left_out),
        "images": {
            "labelled": len(labelled.images),
            "embedded_now": features.embedded_now,
            "from_cache": features.from_cache,
            "unreadable": len(features.unreadable),
            "embed_per_s": features.embed_per_s,
        },
        "split": {
            "by": split.by,
            "rule": split.rule,
            "seed": config.seed,
            "validation_is_test": split.validation_is_test,
            "groups": split.groups_per_part(),
            "frames": {p: len(at[p]) for p in PARTS},
        },
        "classes": _class_rows(seen, images, at, used, split, {f.name: f for f in judged.figures}),
        "too_small": balanced.too_small,
        "fit": {
            "c": config.c,
            "weights": config.weights,
            "min_per_class": config.min_per_class,
            "max_per_class": config.max_per_class,
            "seconds": fitted.seconds,
            "iterations": fitted.iterations,
            "converged": fitted.converged,
        },
        "blank_filter": {
            "level": "event",
            "measured_on": (
                "validation part (optimistic: its thresholds were set on it)"
                if split.validation_is_test
                else "test part"
            ),
            "calibrated_on": "validation part",
            "target_recall": config.target_recall,
            "head": judged.head.to_json(),
            "serving": judged.serving.to_json(),
        },
        "worse": judged.worse,
        "verdict": "forced" if forced else "refused" if judged.worse else "written",
        "pack": None,
    }
    if judged.worse and not forced:
        return TrainResult(report, judged.worse)

    created = config.now()
    calibration = calibrate(
        judged.validation,
        name=f"validation part of {labelled.source}: whole {split.by}s, seed {config.seed}"[:500],
        level="event",
        created=created,
        classified_by=classified_by,
    )
    golden = choose_golden(
        [images[k] for k in dict.fromkeys([*at[split.test_part], *at["validation"]])],
        head_classes,
        fitted.head,
        embedder,
        config.seed,
    )
    pack = write_head_pack(
        config.out,
        name=name,
        version=config.version,
        created=created,
        backbone=backbone,
        classes=head_classes,
        head=fitted.head,
        calibration=calibration,
        blank_threshold=judged.head.threshold,
        golden=golden,
        training=_provenance(config, report, balanced.too_small, forced),
        description=(
            f"{'Site head' if config.site_head else 'Head'} over {backbone.manifest.name}, "
            f"trained by camtrap-cloud train on {labelled.source}"
        ),
    )
    report["pack"] = {
        "path": str(pack),
        "bytes": sum(p.stat().st_size for p in pack.rglob("*") if p.is_file()),
        "golden": len(golden),
    }
    files = write_report(
        config.report_dir, report, judged.confusion, [c.display for c in head_classes]
    )
    return TrainResult(report, judged.worse, pack, list(files))


def _provenance(
    config: TrainConfig, report: dict[str, Any], too_small: dict[str, int], forced: bool
) -> dict[str, Any]:
    """The manifest's ``training``: where the head came from and what it was judged by."""
    return {
        "trainer": f"camtrap-cloud train {VERSION}",
        "source": report["source"],
        "event_rule": report["event_rule"],
        "site_head": config.site_head,
        "split": report["split"],
        "classes": {r["display"]: r["n"] for r in report["classes"] if r["in_head"]},
        "left_out_classes": too_small,
        "seed": config.seed,
        "c": config.c,
        "min_per_class": config.min_per_class,
        "max_per_class": config.max_per_class,
        "backbone_sha256": report["backbone"]["sha256"],
        "serving": report["serving"],
        "metrics": report["blank_filter"],
        "forced": forced,
    }
