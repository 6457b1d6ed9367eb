"""The figures a head is judged by, each measured on a named part.

Blank filter (event level, docs/learning.md, "Calibration and the refusal rule"):

- ROC AUC of blank against not blank on the reported part (scikit-learn's
  ``roc_auc_score``): how well the blank score orders events, whatever the threshold;
- blank removal at the target recall: the threshold is calibrated on the validation part by
  the trap's recall rule (``device.contracts.recall``), then applied to the reported part,
  which says what share of its blank events it removes and what recall it really keeps.

The head and the serving model are each calibrated on the same validation events and judged
on the same reported events. A head is refused when it is worse on either figure by more than
the reported part can resolve: the observed difference is negative and so is the 95th
percentile of its paired bootstrap over the reported events (one-sided 95%). On a handful of
events one misordered pair swings the AUC by a tenth; a refusal must not hinge on it. (A head
that cannot be told apart on so few events cannot drop animals either: the same few events
cannot support a blank threshold, so its blank filter stays off.)

Species (frame level): per-class precision and recall of the head's top class, and the
confusion matrix, on the reported part's frames whose class the head has.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from device.contracts.recall import NOTHING_BLANK, Scored, outcome_at, threshold_for_recall

__all__ = ["BlankFilter", "ClassFigures", "blank_filter", "per_class", "reasons_worse"]


@dataclass(frozen=True)
class BlankFilter:
    auc: float | None  # None: the reported part lacks blank or not-blank events
    target_recall: float
    threshold: float | None  # calibrated on validation; None: nothing is called blank
    reason: str | None  # why the threshold is None
    removed_blank: int
    n_blank: int
    kept_not_blank: int
    n_not_blank: int
    # The reported events as scored (the same events, in the same order, for every model
    # judged on one split): what the paired comparison resamples.
    reported: tuple[Scored, ...] = field(default=(), repr=False)

    @property
    def blanks_removed(self) -> float | None:
        return self.removed_blank / self.n_blank if self.n_blank else None

    @property
    def recall(self) -> float | None:
        return self.kept_not_blank / self.n_not_blank if self.n_not_blank else None

    def to_json(self) -> dict[str, Any]:
        figures = {k: v for k, v in asdict(self).items() if k != "reported"}
        return {**figures, "blanks_removed": self.blanks_removed, "recall": self.recall}


def roc_auc(items: Sequence[Scored]) -> float | None:
    truth = [i.not_blank for i in items]
    if len(set(truth)) < 2:
        return None
    # Not blank is the positive class: the less blank an event scores, the surer it is.
    return float(roc_auc_score(truth, [-i.score for i in items]))


def blank_filter(
    validation: Sequence[Scored], reported: Sequence[Scored], target_recall: float
) -> BlankFilter:
    threshold, reason = threshold_for_recall(validation, target_recall)
    outcome = outcome_at(reported, NOTHING_BLANK if threshold is None else threshold)
    return BlankFilter(
        auc=roc_auc(reported),
        target_recall=target_recall,
        threshold=threshold,
        reason=reason,
        removed_blank=outcome.removed_blank,
        n_blank=outcome.n_blank,
        kept_not_blank=outcome.kept_not_blank,
        n_not_blank=outcome.n_not_blank,
        reported=tuple(reported),
    )


BOOTSTRAP_DRAWS = 2000
WORSE_CONFIDENCE = 0.95


def reasons_worse(head: BlankFilter, serving: BlankFilter, seed: int = 0) -> list[str]:
    """Why the head is worse than the serving model beyond what the reported events can
    resolve (empty: it is not). Both must be judged on the same reported events."""
    h, s = head.reported, serving.reported
    if [i.not_blank for i in h] != [i.not_blank for i in s]:
        raise ValueError("the head and the serving model were judged on different events")
    n = len(h)
    if n == 0:
        return []
    truth = np.array([i.not_blank for i in h], dtype=bool)
    # Each draw resamples the reported events with replacement: one weight per event.
    weights = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), BOOTSTRAP_DRAWS)
    reasons = []
    if head.auc is not None and serving.auc is not None and head.auc < serving.auc:
        gap = _weighted_auc(h, truth, weights) - _weighted_auc(s, truth, weights)
        if _surely_below_zero(gap):
            reasons.append(
                f"blank AUC {head.auc:.4f} < the serving model's {serving.auc:.4f} ({_beyond(n)})"
            )
    if head.removed_blank < serving.removed_blank:
        gap = weights @ _removed(h, head.threshold) - weights @ _removed(s, serving.threshold)
        if _surely_below_zero(gap):
            reasons.append(
                f"removes {head.removed_blank} of {head.n_blank} blank events at target recall "
                f"{head.target_recall:g} < the serving model's {serving.removed_blank} "
                f"({_beyond(n)})"
            )
    return reasons


def _beyond(n: int) -> str:
    return f"beyond chance: paired bootstrap over the {n} reported events, one-sided 95%"


def _surely_below_zero(gaps: np.ndarray) -> bool:
    gaps = gaps[np.isfinite(gaps)]
    return bool(gaps.size) and float(np.quantile(gaps, WORSE_CONFIDENCE)) < 0


def _weighted_auc(items: Sequence[Scored], truth: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The AUC of each resampled draw (NaN for a draw without both kinds of event)."""
    scores = np.array([i.score for i in items])
    present, empty = scores[truth], scores[~truth]
    # Not blank is the positive class: a pair is ordered when the not-blank event scores
    # less blank than the blank one (ties count half), as roc_auc above.
    ordered = (present[:, None] < empty[None, :]) + 0.5 * (present[:, None] == empty[None, :])
    w_present, w_empty = weights[:, truth], weights[:, ~truth]
    pairs = w_present.sum(axis=1) * w_empty.sum(axis=1)
    hits = ((w_present @ ordered) * w_empty).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, hits / pairs, np.nan)


def _removed(items: Sequence[Scored], threshold: float | None) -> np.ndarray:
    """1 for each blank event the threshold removes."""
    if threshold is None:
        return np.zeros(len(items))
    return np.array([float(not i.not_blank and i.score >= threshold) for i in items])


@dataclass(frozen=True)
class ClassFigures:
    name: str
    kind: str
    support: int  # reported frames of this class
    predicted: int  # reported frames the head called this class
    precision: float | None
    recall: float | None


def per_class(
    truth: np.ndarray, predicted: np.ndarray, names: Sequence[str], kinds: Sequence[str]
) -> tuple[list[ClassFigures], np.ndarray]:
    """Per-class figures and the confusion matrix (rows: truth, columns: predicted)."""
    k = len(names)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (truth, predicted), 1)
    figures = []
    for c in range(k):
        hit, support, called = (
            int(confusion[c, c]),
            int(confusion[c].sum()),
            int(confusion[:, c].sum()),
        )
        figures.append(
            ClassFigures(
                names[c],
                kinds[c],
                support,
                called,
                hit / called if called else None,
                hit / support if support else None,
            )
        )
    return figures, confusion
