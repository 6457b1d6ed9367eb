"""What a frame's clock can be trusted with, and how an import shifted it, in words.

The trap's own clock is synced (NTP, GPS) or not. A trail camera's clock was set by hand;
``camtrap import`` may shift a whole import by an offset the technician gives, or by one it
measured from a reference photo of a known time (docs/trail-cameras.md). The timestamp the
device sends is the corrected one; the correction travels in ``exifData`` as
``camtrapClockCorrection`` (``offsetS``, ``method``, ``reference``) next to the camera's own
EXIF time.
"""

from __future__ import annotations

from typing import Any

# An imported trail camera's clock was set by hand. Corrected by an offset the technician
# gave, or against a reference photo, its times are no longer known to be wrong; a plain
# "trailcam" clock is, like a trap's clock that never synced.
CORRECTED_CLOCKS = frozenset({"trailcam+offset", "trailcam+reference"})


def clock_trouble(media: dict[str, Any]) -> bool:
    """Whether a frame's time is known to be unreliable (Camtrap DP ``timestampIssues``)."""
    return not media["clock_synced"] and media["clock_source"] not in CORRECTED_CLOCKS


def signed_hms(seconds: float) -> str:
    """``-01:30:00``, the form ``camtrap import --clock-offset`` takes (milliseconds if any)."""
    sign = "-" if seconds < 0 else "+"
    whole, millis = divmod(round(abs(seconds) * 1000), 1000)
    hours, rest = divmod(whole, 3600)
    text = f"{sign}{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
    return f"{text}.{millis:03d}" if millis else text


def clock_correction(exif: dict[str, Any] | None, offset_s: float | None) -> str | None:
    """How an import shifted a frame's time, in words; ``None`` when it did not."""
    sent = (exif or {}).get("camtrapClockCorrection")
    if isinstance(sent, dict) and isinstance(sent.get("offsetS"), int | float):
        text = signed_hms(float(sent["offsetS"]))
        # clockSource already says how ("trailcam+offset" or "trailcam+reference").
        if sent.get("method") == "reference" and sent.get("reference"):
            return f"{text} from reference photo {sent['reference']}"
        return text
    return signed_hms(offset_s) if offset_s else None
