"""When a photo was taken, as its camera wrote it: EXIF DateTimeOriginal (with
SubSecTimeOriginal when present).

Both ends group labelled photos into events by this time (``camtrap eval --events`` on the
trap, ``camtrap-cloud train --images`` in the cloud), so they read it one way. The time is the
camera's wall clock, naive: the offset tag is ignored, since all photos of one camera share its
clock and many cameras write none.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from PIL import Image

__all__ = ["exif_taken_at"]

_EXIF_IFD = 0x8769
_DATETIME_ORIGINAL = 0x9003
_SUBSEC_ORIGINAL = 0x9291


def exif_taken_at(path: Path) -> datetime | None:
    """DateTimeOriginal (+ SubSecTimeOriginal) as a naive wall-clock time; None if absent or
    unreadable (the photo is then an event of its own)."""
    try:
        with Image.open(path) as image:
            sub = image.getexif().get_ifd(_EXIF_IFD)
            original = sub.get(_DATETIME_ORIGINAL)
            subsec = sub.get(_SUBSEC_ORIGINAL)
    except (OSError, SyntaxError, ValueError):
        return None
    if not isinstance(original, str):
        return None
    try:
        when = datetime.strptime(original.strip().rstrip("\x00"), "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    digits = str(subsec).strip().rstrip("\x00") if subsec is not None else ""
    if digits.isdigit():
        when = when.replace(microsecond=int((digits + "000000")[:6]))
    return when
