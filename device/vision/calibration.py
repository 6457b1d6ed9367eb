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

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from device.contracts.calibration import (
    Calibration,
    CalibrationError,
    Interval,
    OperatingPoint,
)
from device.contracts.manifest import PackError

# The rule itself is shared with the cloud's trainer (device/contracts/recall.py); these names
# are what the vision room has always imported from here.
from device.contracts.recall import (
    NOTHING_BLANK,
    Z95,
    Outcome,
    Scored,
    calibrate,
    operating_point,
    outcome_at,
    threshold_for_recall,
    wilson_interval,
)
from device.vision.taxa import TaxonIndex

__all__ = [
    "EVEN_ODDS",
    "NOTHING_BLANK",
    "Z95",
    "Outcome",
    "Scored",
    "ThresholdInForce",
    "calibrate",
    "format_table",
    "operating_point",
    "operating_point_of",
    "outcome_at",
    "read_calibration_file",
    "threshold_for_recall",
    "threshold_in_force",
    "wilson_interval",
]

if TYPE_CHECKING:
    from device.config import VisionSection
    from device.vision.pack import ModelPack


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
