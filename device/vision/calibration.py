"""Operating points chosen by recall: the calibration rule, and the blank threshold in force.

**The rule** (docs/vision.md, "Calibration"). An item is called blank when its blank score is
at least the threshold ``t``. For a target recall ``r``, the threshold removes the most blanks
of the set while the lower end of the 95% Wilson interval of recall (not-blank items kept /
all not-blank items) stays at least ``r``; of the thresholds that remove those same blanks it
is the largest, so it gives up no not-blank item for nothing. That is the score of the
lowest-scoring blank still removed: with ``t0`` the lowest observed score at which the bound
holds, ``t`` is the lowest blank score at or above ``t0``. When even perfect separation leaves
the bound below ``r`` (11 of 11 kept gives 0.74), or no blank scores at or above ``t0``, the
threshold is null: call nothing blank. A small set therefore gives a conservative answer,
never a lucky one.

**The threshold in force**, first that applies:

1. ``vision.blank_threshold``, when set: the operator's explicit choice;
2. a deployment calibration pushed by remote config (``vision.calibration``);
3. a deployment calibration file (``vision.calibration_file``, from ``camtrap calibrate``);
4. the pack's ``calibration.json``;
5. the pack manifest's stated blank threshold (not recall-calibrated).

From a table, ``vision.target_recall`` picks the row: the smallest target at or above it.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from statistics import NormalDist
from typing import TYPE_CHECKING

from device.contracts.calibration import (
    CONFIDENCE,
    FORMAT,
    TARGET_RECALLS,
    Calibration,
    CalibrationError,
    Interval,
    Level,
    MeasuredOn,
    OperatingPoint,
)
from device.contracts.manifest import PackError
from device.vision.taxa import TaxonIndex

if TYPE_CHECKING:
    from device.config import VisionSection
    from device.vision.pack import ModelPack

# Two-sided 95%: the normal quantile at 0.975 (1.959964).
Z95 = NormalDist().inv_cdf(1 - (1 - CONFIDENCE) / 2)
# "Call nothing blank": no blank score (0..1) reaches it.
NOTHING_BLANK = math.inf


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of ``successes / n`` (None when n is 0).

    Unlike the normal approximation it stays inside [0, 1] and is honest at 0 and n
    successes, which is exactly where a recall of a small set lies.
    """
    if n <= 0:
        return None
    if not 0 <= successes <= n:
        raise ValueError(f"successes {successes} not within 0..{n}")
    p = successes / n
    z2 = z * z
    centre = p + z2 / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    scale = 1 + z2 / n
    return max(0.0, (centre - spread) / scale), min(1.0, (centre + spread) / scale)


@dataclass(frozen=True)
class Scored:
    """One item's blank score and its truth (not blank: animal, human or vehicle)."""

    score: float
    not_blank: bool


@dataclass(frozen=True)
class Outcome:
    """What a threshold does to a scored set."""

    threshold: float
    kept_not_blank: int
    n_not_blank: int
    removed_blank: int
    n_blank: int

    @property
    def recall(self) -> float | None:
        return self.kept_not_blank / self.n_not_blank if self.n_not_blank else None

    @property
    def recall_interval(self) -> tuple[float, float] | None:
        return wilson_interval(self.kept_not_blank, self.n_not_blank)

    @property
    def blanks_removed(self) -> float | None:
        return self.removed_blank / self.n_blank if self.n_blank else None

    @property
    def blanks_removed_interval(self) -> tuple[float, float] | None:
        return wilson_interval(self.removed_blank, self.n_blank)

    def __add__(self, other: Outcome) -> Outcome:
        """Pooled counts (held-out folds, each at its own threshold)."""
        return Outcome(
            threshold=math.nan,
            kept_not_blank=self.kept_not_blank + other.kept_not_blank,
            n_not_blank=self.n_not_blank + other.n_not_blank,
            removed_blank=self.removed_blank + other.removed_blank,
            n_blank=self.n_blank + other.n_blank,
        )


def outcome_at(items: Sequence[Scored], threshold: float) -> Outcome:
    not_blank = [i for i in items if i.not_blank]
    blank = [i for i in items if not i.not_blank]
    return Outcome(
        threshold=threshold,
        kept_not_blank=sum(i.score < threshold for i in not_blank),
        n_not_blank=len(not_blank),
        removed_blank=sum(i.score >= threshold for i in blank),
        n_blank=len(blank),
    )


def threshold_for_recall(
    items: Sequence[Scored], target: float, z: float = Z95
) -> tuple[float | None, str | None]:
    """(threshold, None) by the rule in the module docstring, or (None, why not)."""
    nb_scores = sorted(i.score for i in items if i.not_blank)
    n = len(nb_scores)
    if n == 0:
        return None, "no not-blank items to measure recall on"
    best = wilson_interval(n, n, z)
    assert best is not None
    if best[0] < target:
        return None, (
            f"too few not-blank items: even {n}/{n} kept gives a recall lower bound of "
            f"{best[0]:.3f} < {target:g}"
        )
    # Thresholds only matter where scores are: a lower threshold calls more items blank, and
    # recall only grows with the threshold, so the first observed score (ascending) that
    # keeps the bound removes the most blanks ...
    lowest = None
    for candidate in sorted({i.score for i in items}):
        kept = bisect.bisect_left(nb_scores, candidate)  # not-blank scores below it are kept
        interval = wilson_interval(kept, n, z)
        assert interval is not None
        if interval[0] >= target:
            lowest = candidate
            break
    # ... and raising it up to the lowest blank it removes keeps the same blanks removed and
    # every not-blank item scoring below that blank.
    removable = [
        i.score for i in items if not i.not_blank and lowest is not None and i.score >= lowest
    ]
    if not removable:
        return None, "no blank scores high enough to remove while keeping the recall bound"
    return min(removable), None


def _interval(pair: tuple[float, float] | None) -> Interval | None:
    return None if pair is None else Interval(low=pair[0], high=pair[1])


def operating_point(items: Sequence[Scored], target: float) -> OperatingPoint:
    threshold, reason = threshold_for_recall(items, target)
    outcome = outcome_at(items, NOTHING_BLANK if threshold is None else threshold)
    return OperatingPoint(
        target_recall=target,
        threshold=threshold,
        recall=outcome.recall,
        recall_interval=_interval(outcome.recall_interval),
        blanks_removed=outcome.blanks_removed,
        blanks_removed_interval=_interval(outcome.blanks_removed_interval),
        reason=reason,
    )


def calibrate(
    items: Sequence[Scored],
    *,
    name: str,
    level: Level,
    created: datetime,
    classified_by: str | None = None,
) -> Calibration:
    """The table for ``items``, measured on the set called ``name``."""
    return Calibration(
        format=FORMAT,
        measured_on=MeasuredOn(
            name=name,
            level=level,
            n_not_blank=sum(i.not_blank for i in items),
            n_blank=sum(not i.not_blank for i in items),
            created=created,
            classified_by=classified_by,
        ),
        points=[operating_point(items, target) for target in TARGET_RECALLS],
    )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def _ci(pair: Interval | None) -> str:
    return "" if pair is None else f" [{pair.low * 100:.1f}, {pair.high * 100:.1f}]"


def format_table(calibration: Calibration) -> str:
    m = calibration.measured_on
    lines = [
        f"calibration set: {m.name}  ({m.level} level, n={m.n_not_blank + m.n_blank}: "
        f"{m.n_not_blank} not blank, {m.n_blank} blank)"
        + (f"  scored by {m.classified_by}" if m.classified_by else ""),
        f"rule: the most blanks removed while the {calibration.confidence:.0%} Wilson lower "
        "bound of recall reaches the target (blank when blank_score >= threshold)",
        f"{'target':>7}{'threshold':>11}  {'recall [95% CI]':<26}{'blanks removed [95% CI]':<28}",
    ]
    for p in calibration.points:
        shown = "none" if p.threshold is None else f"{p.threshold:.4f}"
        lines.append(
            f"{p.target_recall:>7g}{shown:>11}  "
            f"{_pct(p.recall) + _ci(p.recall_interval):<26}"
            f"{_pct(p.blanks_removed) + _ci(p.blanks_removed_interval):<28}"
            + (f"  ({p.reason}; nothing is called blank)" if p.reason else "")
        )
    return "\n".join(lines)


# -- the threshold in force ---------------------------------------------------------------


@dataclass(frozen=True)
class ThresholdInForce:
    """The blank threshold an engine uses and where it came from (status and eval print it)."""

    value: float  # blank when blank_score >= value; NOTHING_BLANK: nothing is called blank
    source: str  # the config key or file it came from
    detail: str = ""
    calibration: Calibration | None = None
    point: OperatingPoint | None = None

    @property
    def calls_nothing_blank(self) -> bool:
        return math.isinf(self.value)

    @property
    def shown(self) -> str:
        return "none (nothing is called blank)" if self.calls_nothing_blank else f"{self.value:.4f}"

    def describe(self) -> str:
        return f"{self.shown} from {self.source}" + (f": {self.detail}" if self.detail else "")


def read_calibration_file(path: Path) -> Calibration:
    """A deployment calibration file; PackError (the engine cannot serve) in one line."""
    where = f"vision.calibration_file {path}"
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise PackError(f"{where}: no such file") from None
    except OSError as exc:
        raise PackError(f"{where}: cannot read ({exc.strerror})") from None
    try:
        return Calibration.from_json(data)
    except CalibrationError as exc:
        raise PackError(f"{where}: {exc}") from None


def _from_table(calibration: Calibration, target: float, source: str) -> ThresholdInForce:
    m = calibration.measured_on
    measured = f'"{m.name}" ({m.level} level, {m.n_not_blank} not blank / {m.n_blank} blank)'
    point = calibration.point_for(target)
    if point is None or point.threshold is None:
        why = point.reason if point is not None and point.reason else "no row for it"
        return ThresholdInForce(
            NOTHING_BLANK,
            source,
            f"target recall {target:g}: {why} on {measured}",
            calibration,
            point,
        )
    return ThresholdInForce(
        point.threshold,
        source,
        f"row {point.target_recall:g} for target recall {target:g}, measured on {measured}",
        calibration,
        point,
    )


def threshold_in_force(
    vision: VisionSection,
    pack_calibration: Calibration | None,
    manifest_threshold: float,
    manifest_note: str = "",
) -> ThresholdInForce:
    """The blank threshold by the precedence in the module docstring."""
    if vision.blank_threshold is not None:
        return ThresholdInForce(vision.blank_threshold, "vision.blank_threshold", "set explicitly")
    target = vision.target_recall
    if vision.calibration is not None:
        return _from_table(vision.calibration, target, "vision.calibration (remote config)")
    if vision.calibration_file is not None:
        table = read_calibration_file(vision.calibration_file)
        return _from_table(table, target, f"vision.calibration_file {vision.calibration_file}")
    if pack_calibration is not None:
        return _from_table(pack_calibration, target, "the pack's calibration.json")
    return ThresholdInForce(
        manifest_threshold,
        "the pack manifest",
        "not recall-calibrated" + (f"; {manifest_note}" if manifest_note else ""),
    )


# A pack without a blank class (the default ImageNet pack) has no stated blank threshold of
# its own: its "something is here" evidence is the summed animal+human+vehicle probability,
# and a frame is blank when that evidence is below even odds.
EVEN_ODDS = 0.5


def operating_point_of(pack: ModelPack, vision: VisionSection) -> ThresholdInForce:
    """The blank threshold a pack serves with under ``vision`` (the engine and status)."""
    has_blank_class = TaxonIndex(pack.taxa).has_blank_class
    return threshold_in_force(
        vision,
        pack.calibration,
        pack.thresholds["blank"] if has_blank_class else EVEN_ODDS,
        "" if has_blank_class else "no blank class: even odds of presence",
    )
