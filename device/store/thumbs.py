"""Thumbnails: the small copy that travels first and that reviewers see first.

A frame's thumbnail lives at the same dated path as the frame, under ``thumbs/`` instead of
``media/`` (``thumbs/YYYY/MM/DD/<media-id>.jpg``); ``write_thumbnail`` puts it there durably.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageOps

from device.store import files
from device.store.media import StoredFile

THUMB_LONG_SIDE = 320
THUMB_QUALITY = 80


def make_thumbnail(path: Path, long_side: int = THUMB_LONG_SIDE) -> bytes:
    """A JPEG whose long side is ``long_side``; decoded at reduced scale, so it stays cheap."""
    with Image.open(path) as image:
        image.draft("RGB", (long_side, long_side))
        upright = ImageOps.exif_transpose(image)
        upright = upright.convert("RGB")
        upright.thumbnail((long_side, long_side), Image.Resampling.BILINEAR)
        out = io.BytesIO()
        upright.save(out, "JPEG", quality=THUMB_QUALITY, optimize=True)
    return out.getvalue()


def thumb_relpath(media_path: str) -> Path:
    """``media/2026/05/01/<id>.jpg`` -> ``thumbs/2026/05/01/<id>.jpg``."""
    frame = Path(media_path)
    return Path(files.THUMB_DIR, *frame.parent.parts[1:], frame.name)


def write_thumbnail(data_dir: Path, media_path: str, data: bytes) -> StoredFile:
    """The thumbnail of the frame at ``media_path``, written atomically; its row is the
    caller's (``verdicts.record_verdict`` records it with the classification)."""
    rel = thumb_relpath(media_path)
    directory = files.ensure_subdir(data_dir, *rel.parent.parts)
    files.atomic_write(directory, rel.name, data)
    return StoredFile(str(rel), files.sha256_hex(data), len(data))
