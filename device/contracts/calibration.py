"""The blank-filter calibration table (``camtrap-calibration/1``), shared by device and cloud.

A calibration says, for each target recall (0.9, 0.95, 0.98, 0.99), which blank-score
threshold keeps at least that share of the not-blank items (animal, human, vehicle) *with 95%
confidence* on a named labelled set, and what that threshold cost and achieved there. The rule
that turns scores into the table lives in ``device/vision/calibration.py`` (docs/vision.md,
"Calibration"); this module is only the format, so that a pack's ``calibration.json``, the file
``camtrap calibrate --out`` writes and a table pushed by remote config are all read, and
refused, by the same rules.

``threshold`` null means the set could not support that target (too few not-blank items for
the confidence bound to reach it, or no observed score that removes a blank without breaking
it): the trap then calls nothing blank at that target. It is the conservative answer, never a
guess.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

__all__ = [
    "CONFIDENCE",
    "FORMAT",
    "RULE",
    "TARGET_RECALLS",
    "Calibration",
    "CalibrationError",
    "Interval",
    "Level",
    "MeasuredOn",
    "OperatingPoint",
]

FORMAT = "camtrap-calibration/1"
# The lower end of a Wilson score interval at this confidence must reach the target recall.
RULE: Literal["wilson-lower-bound"] = "wilson-lower-bound"
CONFIDENCE = 0.95
TARGET_RECALLS = (0.9, 0.95, 0.98, 0.99)
# Calibrated per frame (single stills) or per event (whole bursts, the trap's decision).
Level = Literal["event", "frame"]
_SAME = 1e-9  # two targets closer than this are the same target


class CalibrationError(ValueError):
    """A calibration document that breaks the format; the message is one line."""


class _Part(BaseModel):
    # A table that decides what the trap may call blank: a misspelt key is a mistake to
    # refuse, not an extension to keep.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Interval(_Part):
    """A 95% Wilson score interval of a proportion."""

    low: float = Field(ge=0, le=1)
    high: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> Interval:
        if self.low > self.high:
            raise ValueError(f"interval low {self.low} is above high {self.high}")
        return self


class MeasuredOn(_Part):
    """The named labelled set the table was measured on."""

    name: str = Field(min_length=1, max_length=500)
    level: Level
    n_not_blank: int = Field(ge=0, description="animal, human and vehicle items")
    n_blank: int = Field(ge=0)
    created: AwareDatetime
    classified_by: str | None = Field(None, max_length=200, description="model name@version")


class OperatingPoint(_Part):
    """One target recall: the threshold in force for it and what it did on the set."""

    target_recall: float = Field(gt=0, lt=1)
    threshold: float | None = Field(ge=0, le=1, description="blank when blank_score >= it")
    recall: float | None = Field(None, ge=0, le=1)
    recall_interval: Interval | None = None
    blanks_removed: float | None = Field(None, ge=0, le=1)
    blanks_removed_interval: Interval | None = None
    reason: str | None = Field(None, max_length=500, description="why threshold is null")


class Calibration(_Part):
    format: Literal["camtrap-calibration/1"]
    rule: Literal["wilson-lower-bound"] = RULE
    confidence: float = Field(CONFIDENCE, gt=0, lt=1)
    measured_on: MeasuredOn
    points: list[OperatingPoint]

    @model_validator(mode="after")
    def _one_row_per_target_and_monotone(self) -> Calibration:
        targets = tuple(p.target_recall for p in self.points)
        if len(targets) != len(TARGET_RECALLS) or any(
            abs(a - b) > _SAME for a, b in zip(targets, TARGET_RECALLS, strict=False)
        ):
            wanted = ", ".join(f"{t:g}" for t in TARGET_RECALLS)
            raise ValueError(f"points must be one row per target recall {wanted}, in that order")
        # A higher recall can only need a higher threshold (null: call nothing blank, the
        # highest of all); a table that says otherwise was not made by the rule.
        previous = -1.0
        for point in self.points:
            value = 2.0 if point.threshold is None else point.threshold
            if value < previous:
                raise ValueError(
                    f"target recall {point.target_recall:g}: threshold {point.threshold} is"
                    " below that of a lower target"
                )
            previous = value
        return self

    # -- reading ---------------------------------------------------------------------------

    @classmethod
    def from_document(cls, document: Any) -> Calibration:
        """The calibration a parsed JSON document states; CalibrationError in one line."""
        if not isinstance(document, Mapping):
            raise CalibrationError("not a JSON object")
        try:
            return cls.model_validate(dict(document))
        except ValidationError as exc:
            raise CalibrationError(_first_problem(exc)) from None

    @classmethod
    def from_json(cls, data: bytes) -> Calibration:
        try:
            document = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CalibrationError(f"not valid JSON ({exc})") from None
        return cls.from_document(document)

    def to_json(self) -> bytes:
        return (json.dumps(self.model_dump(mode="json"), indent=2) + "\n").encode()

    # -- using -------------------------------------------------------------------------------

    def point_for(self, target_recall: float) -> OperatingPoint | None:
        """The row in force for ``target_recall``: the smallest target at or above it (a
        target between two rows is met by the stricter one); None above the last row."""
        for point in self.points:
            if point.target_recall >= target_recall - _SAME:
                return point
        return None


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in error["loc"]) or "(calibration)"
    if error["type"] == "missing":
        return f"{where} is missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if error["loc"] else message
