"""A trail camera's clock, corrected: the offset a whole import is shifted by.

Trail-camera clocks are set by hand and drift. A technician gives the error either as an
offset (``--clock-offset -00:04:30``: the camera is 4 min 30 s fast) or as a reference photo
(``--reference DCIM/100RECNX/IMG_0042.JPG=2026-11-30T14:05:00``: a photo of a phone's clock,
and the time the phone showed). The offset is added to every photo's EXIF time; the original
time is kept in the photo's exifData.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

# A camera a decade off is a typo, not a clock.
MAX_OFFSET = timedelta(days=3660)
_OFFSET_RE = re.compile(r"^([+-])?(\d{1,6}):([0-5]\d):([0-5]\d)$")


class ClockArgumentError(ValueError):
    """A ``--clock-offset`` or ``--reference`` that cannot be used: the message says why."""


@dataclass(frozen=True)
class ClockCorrection:
    offset: timedelta = timedelta(0)
    method: str | None = None  # None | "offset" | "reference"
    reference: str | None = None  # PHOTO=TIME as given

    @property
    def offset_s(self) -> float:
        return self.offset.total_seconds()

    @property
    def clock_source(self) -> str:
        """The clock a photo's time comes from, as the wire says it (docs/protocol.md)."""
        return "trailcam" if self.method is None else f"trailcam+{self.method}"

    @property
    def synced(self) -> bool:
        """Only a reference photo measures the camera's clock against a true one."""
        return self.method == "reference"

    def exif_note(self) -> dict[str, object] | None:
        """What goes into each photo's exifData, beside its original EXIF time."""
        if self.method is None:
            return None
        note: dict[str, object] = {"offsetS": self.offset_s, "method": self.method}
        if self.reference:
            note["reference"] = self.reference
        return note


NO_CORRECTION = ClockCorrection()


def parse_offset(text: str) -> ClockCorrection:
    """``±HH:MM:SS`` (hours may exceed 24): the amount to ADD to the camera's times."""
    match = _OFFSET_RE.match(text.strip())
    if match is None:
        raise ClockArgumentError(
            f"--clock-offset {text!r}: expected ±HH:MM:SS, e.g. -00:04:30 for a camera 4 min"
            " 30 s fast"
        )
    sign, hours, minutes, seconds = match.groups()
    offset = timedelta(hours=int(hours), minutes=int(minutes), seconds=int(seconds))
    if sign == "-":
        offset = -offset
    _check_size(offset, f"--clock-offset {text}")
    return ClockCorrection(offset, "offset", None)


@dataclass(frozen=True)
class ReferenceArgument:
    """``--reference PHOTO=TIME`` split; the offset needs the photo's EXIF time."""

    photo: str
    true_time: datetime  # naive (the deployment's zone) or aware
    given: str


def parse_reference(text: str) -> ReferenceArgument:
    photo, sep, when = text.rpartition("=")
    if not sep or not photo.strip() or not when.strip():
        raise ClockArgumentError(
            f"--reference {text!r}: expected PHOTO=TIME, e.g."
            " DCIM/100RECNX/IMG_0042.JPG=2026-11-30T14:05:00"
        )
    try:
        true_time = datetime.fromisoformat(when.strip())
    except ValueError as exc:
        raise ClockArgumentError(
            f"--reference {text!r}: {when.strip()!r} is not a time (use ISO 8601,"
            " 2026-11-30T14:05:00 or 2026-11-30T14:05:00+02:00)"
        ) from exc
    return ReferenceArgument(photo.strip(), true_time, text)


def reference_correction(
    argument: ReferenceArgument, camera_time: datetime, zone: tzinfo
) -> ClockCorrection:
    """The correction that makes the reference photo's ``camera_time`` (aware, as the camera's
    clock said it) the time the phone showed."""
    true_time = argument.true_time
    if true_time.tzinfo is None:
        true_time = true_time.replace(tzinfo=zone)
    offset = true_time - camera_time
    _check_size(offset, f"--reference {argument.given}")
    return ClockCorrection(offset, "reference", argument.given)


def _check_size(offset: timedelta, what: str) -> None:
    if abs(offset) > MAX_OFFSET:
        raise ClockArgumentError(f"{what}: a correction of {offset} is more than ten years")
