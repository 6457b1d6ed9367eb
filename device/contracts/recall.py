"""The recall rule: how a blank threshold is chosen for a target recall, on a labelled set.

Both ends use it: the trap's ``camtrap calibrate`` (device/vision/calibration.py, which
documents the rule and the threshold in force) and the cloud's ``camtrap-cloud train``, which
calibrates a head on its validation split. One implementation, so a table means the same
thing wherever it was measured.

An item is called blank when its blank score is at least the threshold ``t``. For a target
recall ``r``, the threshold removes the most blanks of the set while the lower end of the 95%
Wilson interval of recall stays at least ``r``; when the set cannot support ``r``, the
threshold is null (call nothing blank).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from statistics import NormalDist

from device.contracts.calibration import (
    CONFIDENCE,
    FORMAT,
    TARGET_RECALLS,
    Calibration,
    Interval,
    Level,
    MeasuredOn,
    OperatingPoint,
)

__all__ = [
    "NOTHING_BLANK",
    "Z95",
    "Outcome",
    "Scored",
    "calibrate",
    "operating_point",
    "outcome_at",
    "threshold_for_recall",
    "wilson_interval",
]

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
