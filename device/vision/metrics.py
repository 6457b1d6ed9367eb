"""Figures of a scored set at one level (frames or events): what the evaluation reports.

- recall (not-blank items kept) and blanks removed at the threshold in force, each with its
  95% Wilson interval (``device.vision.calibration.wilson_interval``);
- AUC: the chance that a random not-blank item scores below (less blank than) a random blank
  one, ties counting half;
- blanks removed at recall 0.95, 0.98 and 0.99: descriptive points of *this* set (the most
  blanks any threshold removes while the set's own recall stays at or above the level). They
  describe the separation; they are not thresholds, and none is ever used as one;
- the same figures per difficulty (or any other breakdown column).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

from device.vision.calibration import Outcome, Scored, outcome_at

DESCRIPTIVE_RECALLS = (0.95, 0.98, 0.99)


def auc(items: Sequence[Scored]) -> float | None:
    """P(score of a not-blank item < score of a blank item), ties half; None without both."""
    blank = sorted(i.score for i in items if not i.not_blank)
    not_blank = [i.score for i in items if i.not_blank]
    if not blank or not not_blank:
        return None
    wins = 0.0
    for score in not_blank:
        below = bisect.bisect_left(blank, score)
        ties = bisect.bisect_right(blank, score) - below
        wins += len(blank) - below - ties + ties / 2
    return wins / (len(blank) * len(not_blank))


def blanks_removed_at_recall(items: Sequence[Scored], recall: float) -> float | None:
    """The most blanks removed by any threshold whose recall on these items is >= ``recall``."""
    blank = sorted(i.score for i in items if not i.not_blank)
    not_blank = sorted(i.score for i in items if i.not_blank)
    if not blank or not not_blank:
        return None
    best = 0.0  # calling nothing blank keeps every item: recall 1, nothing removed
    for threshold in sorted({i.score for i in items}):
        kept = bisect.bisect_left(not_blank, threshold)
        removed = len(blank) - bisect.bisect_left(blank, threshold)
        if kept / len(not_blank) >= recall:
            best = max(best, removed / len(blank))
    return best


@dataclass
class LevelFigures:
    level: str  # "frame" or "event"
    items: list[Scored]
    at_threshold: Outcome
    auc: float | None
    descriptive: dict[float, float | None]
    breakdown: dict[str, Outcome] = field(default_factory=dict)  # e.g. per difficulty
    errors: int = 0  # items that could not be scored


def level_figures(
    level: str,
    items: Sequence[tuple[Scored, str | None]],
    threshold: float,
    errors: int = 0,
) -> LevelFigures:
    """``items`` pairs each scored item with its breakdown value (None: no breakdown)."""
    scored = [s for s, _ in items]
    groups: dict[str, list[Scored]] = {}
    for s, group in items:
        if group is not None:
            groups.setdefault(group, []).append(s)
    return LevelFigures(
        level=level,
        items=scored,
        at_threshold=outcome_at(scored, threshold),
        auc=auc(scored),
        descriptive={r: blanks_removed_at_recall(scored, r) for r in DESCRIPTIVE_RECALLS},
        breakdown={g: outcome_at(members, threshold) for g, members in sorted(groups.items())},
        errors=errors,
    )
