"""Score the blank filter and the species classifier against a labelled folder of images.

labels.csv has columns ``file,label[,species]``; label is animal, blank, human or vehicle and
species a common name. Human and vehicle frames count as "not blank": the filter must keep
them. Every threshold in the sweep is reported so a reader can see the trade-off instead of
one number tuned to one folder.

This is the single-image report (``camtrap eval DIR``). Other columns (``event``, ``dataset``,
``deployment``, ``difficulty``, ...) are kept on each sample for the event-level report and
leave-one-group-out splits (``device/vision/event_eval.py``).
"""

from __future__ import annotations

import csv
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeGuard

import numpy as np
from PIL import Image, ImageOps

from device.contracts.protocol import ObservationType
from device.vision.engine import ImageResult, VisionEngine
from device.vision.preprocess import ImageError
from device.vision.taxa import split_taxonomy

# A label names what the image shows, in the observation types the engine answers with.
TRUE_LABELS: tuple[ObservationType, ...] = ("animal", "blank", "human", "vehicle")
PREDICTED: tuple[ObservationType, ...] = ("animal", "human", "vehicle", "blank", "unknown")
SWEEP = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99)


@dataclass
class Sample:
    file: str
    label: ObservationType
    species: str | None
    result: ImageResult | None = None
    error: str | None = None
    columns: dict[str, str] = field(default_factory=dict)  # every column, stripped

    def column(self, name: str) -> str | None:
        """The row's value in column ``name``; None when the column is absent or empty."""
        return self.columns.get(name) or None


@dataclass
class Rates:
    threshold: float
    animal_recall: float | None
    nonblank_recall: float | None
    blanks_removed: float | None
    precision: float | None


@dataclass
class Report:
    threshold: float
    threshold_source: str
    samples: list[Sample]
    at_threshold: Rates
    sweep: list[Rates]
    confusion: dict[ObservationType, Counter[ObservationType]]
    species_top1: float | None
    genus_top1: float | None
    species_scored: int
    species_not_in_model: list[str] = field(default_factory=list)


def _is_true_label(text: str) -> TypeGuard[ObservationType]:
    return text in TRUE_LABELS


def read_labels(path: Path) -> list[Sample]:
    """The labels CSV's rows; ValueError naming the file (and line) when it is malformed."""
    try:
        return _read_labels(path)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    except csv.Error as exc:
        raise ValueError(f"{path}: not a CSV file ({exc})") from exc


def _read_labels(path: Path) -> list[Sample]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"file", "label"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: needs columns file,label[,species]")
        samples = []
        for n, row in enumerate(reader, 2):
            label = (row.get("label") or "").strip().lower()
            if not _is_true_label(label):
                raise ValueError(
                    f"{path}:{n}: label {label!r} is not one of {', '.join(TRUE_LABELS)}"
                )
            if not (row.get("file") or "").strip():
                raise ValueError(f"{path}:{n}: the file column is empty")
            species = (row.get("species") or "").strip() or None
            columns = {
                str(k).strip(): (v or "").strip() for k, v in row.items() if isinstance(k, str)
            }
            samples.append(
                Sample(
                    row["file"].strip(),
                    label,
                    species if label == "animal" else None,
                    columns=columns,
                )
            )
        return samples


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def rates(samples: list[Sample], threshold: float) -> Rates:
    scored = [s for s in samples if s.result is not None]
    kept = {id(s) for s in samples if s.result is not None and s.result.blank_score < threshold}
    animals = [s for s in scored if s.label == "animal"]
    nonblank = [s for s in scored if s.label != "blank"]
    blanks = [s for s in scored if s.label == "blank"]
    return Rates(
        threshold=threshold,
        animal_recall=_ratio(sum(id(s) in kept for s in animals), len(animals)),
        nonblank_recall=_ratio(sum(id(s) in kept for s in nonblank), len(nonblank)),
        blanks_removed=_ratio(sum(id(s) not in kept for s in blanks), len(blanks)),
        precision=_ratio(sum(id(s) in kept for s in nonblank), len(kept)),
    )


def _normal_name(name: str) -> str:
    """'African elephant (legs, close)' -> 'african elephant'."""
    return re.sub(r"\s*\(.*?\)\s*", " ", name).strip().lower()


def _species_keys(engine: VisionEngine) -> dict[str, str]:
    """Normalised common or label name -> taxonomy key, for the species the model knows."""
    out: dict[str, str] = {}
    for taxon, display in zip(engine.pack.taxa, engine.pack.display_names, strict=True):
        if taxon.kind == "animal" and taxon.taxonomy[4]:
            for name in (taxon.common_name, display):
                if name:
                    out.setdefault(_normal_name(name), taxon.key)
    return out


def evaluate(engine: VisionEngine, folder: Path, labels_csv: Path) -> Report:
    samples = read_labels(labels_csv)
    for sample in samples:
        try:
            sample.result = engine.classify_image(folder / sample.file)
        except ImageError as exc:
            sample.error = str(exc)
    threshold = engine.thresholds.blank
    confusion: dict[ObservationType, Counter[ObservationType]] = {
        label: Counter() for label in TRUE_LABELS
    }
    for s in samples:
        if s.result is not None:
            confusion[s.label][s.result.observation_type] += 1
    known = _species_keys(engine)
    species_ok = genus_ok = scored = 0
    missing = []
    for s in samples:
        if s.result is None or not s.species:
            continue
        true_key = known.get(_normal_name(s.species))
        if true_key is None:
            missing.append(s.species)
            continue
        scored += 1
        pred = split_taxonomy(s.result.taxonomy)
        truth = split_taxonomy(true_key)
        if s.result.taxon_level == "species" and pred == truth:
            species_ok += 1
        if s.result.taxon_level in ("species", "genus") and pred[:4] == truth[:4]:
            genus_ok += 1
    return Report(
        threshold=threshold,
        threshold_source=engine.operating_point.describe(),
        samples=samples,
        at_threshold=rates(samples, threshold),
        sweep=[rates(samples, t) for t in sorted({*SWEEP, threshold})],
        confusion=confusion,
        species_top1=_ratio(species_ok, scored),
        genus_top1=_ratio(genus_ok, scored),
        species_scored=scored,
        species_not_in_model=missing,
    )


def _pct(value: float | None) -> str:
    return "  n/a" if value is None else f"{value * 100:5.1f}%"


def _threshold(value: float) -> str:
    return "none" if math.isinf(value) else f"{value:.3f}"


def format_report(report: Report) -> str:
    r = report.at_threshold
    n_err = sum(s.error is not None for s in report.samples)
    counts = Counter(s.label for s in report.samples if s.result is not None)
    lines = [
        f"images: {len(report.samples)} ({n_err} unreadable)  "
        + "  ".join(f"{k}={counts.get(k, 0)}" for k in TRUE_LABELS),
        f"blank threshold: {_threshold(report.threshold)} (blank when blank_score >= threshold)",
        f"threshold in force: {report.threshold_source}",
        f"animal recall: {_pct(r.animal_recall)}   not-blank recall (animal+human+vehicle): "
        f"{_pct(r.nonblank_recall)}",
        f"blanks removed: {_pct(r.blanks_removed)}   precision (kept frames not blank): "
        f"{_pct(r.precision)}",
        "",
        "confusion (rows: truth, columns: predicted observation_type)",
        f"{'':10}" + "".join(f"{p:>9}" for p in PREDICTED),
    ]
    for label in TRUE_LABELS:
        row = report.confusion[label]
        lines.append(f"{label:10}" + "".join(f"{row.get(p, 0):>9}" for p in PREDICTED))
    lines += [
        "",
        f"species top-1: {_pct(report.species_top1)}   genus top-1: {_pct(report.genus_top1)}   "
        f"(scored {report.species_scored}; not in the model: "
        + (
            ", ".join(f"{k} x{v}" for k, v in Counter(report.species_not_in_model).items())
            or "none"
        )
        + ")",
        "",
        "threshold sweep",
        f"{'threshold':>10}{'animal recall':>15}{'not-blank rec.':>16}"
        f"{'blanks removed':>16}{'precision':>11}",
    ]
    for rate in report.sweep:
        mark = "  <- configured" if abs(rate.threshold - report.threshold) < 1e-9 else ""
        lines.append(
            f"{_threshold(rate.threshold):>10}{_pct(rate.animal_recall):>15}"
            f"{_pct(rate.nonblank_recall):>16}{_pct(rate.blanks_removed):>16}"
            f"{_pct(rate.precision):>11}{mark}"
        )
    lines += ["", "per image"]
    for s in report.samples:
        if s.result is None:
            lines.append(f"  {s.file}: ERROR {s.error}")
            continue
        res = s.result
        name = res.common_name or res.scientific_name or ""
        lines.append(
            f"  {s.file}: truth={s.label} pred={res.observation_type} {name} "
            f"blank_score={res.blank_score:.3f} ({res.ms:.0f} ms)"
        )
    return "\n".join(lines)


def plot(report: Report, out: Path) -> None:
    """Precision/recall of the not-blank decision as the blank threshold moves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = sorted({s.result.blank_score for s in report.samples if s.result is not None})
    points = [rates(report.samples, t + 1e-9) for t in scores] + [rates(report.samples, 0.0)]
    # A threshold with no recall or no precision (nothing kept, nothing to keep) has no point.
    pts = [
        (p.nonblank_recall, p.precision)
        for p in points
        if p.nonblank_recall is not None and p.precision is not None
    ]
    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label="not blank")
    here = report.at_threshold
    if here.nonblank_recall is not None and here.precision is not None:
        ax.scatter(
            [here.nonblank_recall],
            [here.precision],
            color="red",
            zorder=3,
            label=f"configured {report.threshold:.2f}",
        )
    ax.set_xlabel("recall (animal + human + vehicle kept)")
    ax.set_ylabel("precision (kept frames that are not blank)")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_title("blank filter, threshold sweep")
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


# -- the evaluation's inputs from device.hardware (the one door the import contract opens) ----


@dataclass(frozen=True)
class RenderedFrame:
    path: Path  # the JPEG, written into the caller's folder
    label: ObservationType  # animal or blank: the renderer's truth for this frame
    lores: np.ndarray  # the analysis plane the synthetic camera would give it
    kind: str  # the scene's kind: crossing, light, wind, noise, night


def render_burst(
    seed: int,
    index: int,
    folder: Path,
    size: tuple[int, int],
    lores_size: tuple[int, int],
    frames: int,
) -> list[RenderedFrame]:
    """Burst ``index`` of the synthetic scenes of ``seed`` (``device.hardware.scene``)."""
    from device.hardware.scene import SceneRenderer, encode_jpeg, lores_luma, plan_scene

    plan = plan_scene(seed, index)
    renderer = SceneRenderer(plan, size)
    out = []
    for i in range(frames):
        rendered = renderer.render(i)
        path = folder / f"s{index:05d}_f{i}.jpg"
        path.write_bytes(encode_jpeg(rendered.image, 90))
        label: ObservationType = "animal" if rendered.truth == "animal" else "blank"
        out.append(RenderedFrame(path, label, lores_luma(rendered.image, lores_size), plan.kind))
    return out


def photo_lores(path: Path, lores_size: tuple[int, int]) -> np.ndarray | None:
    """A stored photo's analysis plane as a camera makes it: the whole field of view, upright,
    as luma at ``lores_size`` (``device.hardware.scene.lores_luma``). None if unreadable."""
    from device.hardware.scene import lores_luma

    try:
        with Image.open(path) as im:
            # libjpeg scales while decoding (grey only from colour JPEGs, not CMYK).
            im.draft("L" if im.mode in ("RGB", "YCbCr", "L") else None, lores_size)
            upright = ImageOps.exif_transpose(im)
            return lores_luma(upright, lores_size)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None
