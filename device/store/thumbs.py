"""Thumbnails: the small copy that travels first and that reviewers see first."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageOps

THUMB_LONG_SIDE = 320
THUMB_QUALITY = 80


def make_thumbnail(path: Path, long_side: int = THUMB_LONG_SIDE) -> bytes:
    """A JPEG whose long side is ``long_side``; decoded at reduced scale, so it stays cheap."""
    with Image.open(path) as image:
        image.draft("RGB", (long_side, long_side))
        upright = ImageOps.exif_transpose(image)
        upright = upright.convert("RGB")
        upright.thumbnail((long_side, long_side), Image.BILINEAR)
        out = io.BytesIO()
        upright.save(out, "JPEG", quality=THUMB_QUALITY, optimize=True)
    return out.getvalue()
