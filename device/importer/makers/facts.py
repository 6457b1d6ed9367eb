"""What a camera's maker note says about one photo, in the words camtrap uses for it.

A maker note is a block of vendor bytes inside EXIF. Each layout reader (one module per brand)
turns its bytes into one ``MakerFacts``; the names and vocabularies here are shared so an
importer never needs to know which brand a photo came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

__all__ = ["MOON_PHASES", "CaptureMethod", "MakerFacts", "capture_method_for"]

CaptureMethod = Literal["activityDetection", "timeLapse"]

# The eight phases in the order the cameras count them (0 = new moon); the standard
# astronomical names, lower case, so every brand reports the same words.
MOON_PHASES: tuple[str, ...] = (
    "new",
    "waxing crescent",
    "first quarter",
    "waxing gibbous",
    "full",
    "waning gibbous",
    "last quarter",
    "waning crescent",
)

# Camtrap DP's captureMethod: a photo a timer took, or one a sensor (the PIR, an external
# trigger) took because something moved. A manual shot or an unknown mode says neither.
_CAPTURE_METHODS: dict[str, CaptureMethod] = {
    "motion": "activityDetection",
    "external": "activityDetection",
    "timelapse": "timeLapse",
}


def capture_method_for(trigger: str | None) -> CaptureMethod | None:
    """Camtrap DP captureMethod for a maker note's trigger; None when the trigger says neither."""
    return _CAPTURE_METHODS.get(trigger) if trigger is not None else None


@dataclass(frozen=True)
class MakerFacts:
    layout: str  # "reconyx-hyperfire" | "reconyx-ultrafire" | "reconyx-hyperfire2"
    sequence: tuple[int, int] | None  # (3, 5) = "3 of 5"
    event_number: int | None
    trigger: str | None  # "motion" | "timelapse" | "external" | ... as the layout says
    capture_method: CaptureMethod | None
    temperature_c: float | None
    moon_phase: str | None  # one of MOON_PHASES
    serial: str | None
    taken_at: datetime | None  # the note's own (naive) date and time, when it has one
    fields: dict[str, Any] = field(default_factory=dict)  # JSON-safe, camelCase: all read
