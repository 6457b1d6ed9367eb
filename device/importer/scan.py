"""What is on a card: its files, in a stable order, without what a computer left there.

A card is walked whole (``DCIM/100RECNX/...``, or any folder of photos), without following
symbolic links. Left out, and counted: hidden names (``.Trashes``, macOS's ``._IMG_0001.JPG``
AppleDouble files, ``.Spotlight-V100``), Windows' ``System Volume Information`` and
``$RECYCLE.BIN``, and empty files at the card's root (how fusefat shows a volume label).
Everything else is offered to the photo reader, which says what is not a photo (a video, a
text file): those are recorded, never silently skipped.

Names are compared without regard to case (FAT stores ``IMG_0001.JPG`` as the camera wrote it,
a computer may show ``img_0001.jpg``). File times are never used: FAT keeps local time at
two-second resolution, and a copy resets it; a photo's time comes from its EXIF.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

SYSTEM_DIRS = frozenset({"system volume information", "$recycle.bin", "recycler", "lost.found"})
# An input/output failure of this kind means the card itself went away (pulled out, its FUSE
# process killed, unmounted under us), not that one file is bad.
GONE_ERRNOS = frozenset(
    {errno.ENOTCONN, errno.ENODEV, errno.ENXIO, errno.ESHUTDOWN, errno.ESTALE, errno.EIO}
)


@dataclass(frozen=True)
class SourceFile:
    rel: str  # relative to the source, with "/" separators, as the card names it
    path: Path
    size: int


@dataclass(frozen=True)
class Listing:
    files: list[SourceFile]
    skipped: int  # hidden and system files left out


class SourceGone(OSError):
    """The card (or folder) disappeared while it was read."""


def list_source(root: Path) -> Listing:
    """Every file under ``root`` worth offering to the photo reader, in name order."""
    found: list[SourceFile] = []
    skipped = 0
    stack = [root]
    while stack:
        directory = stack.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith(".") or name.lower() in SYSTEM_DIRS:
                    skipped += 1
                    continue
                if entry.is_symlink():
                    skipped += 1
                    continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    size = entry.stat(follow_symlinks=False).st_size
                    if directory == root and size == 0:
                        # fusefat shows the volume label as an empty file at the root; an
                        # empty file there is never a camera's photo.
                        skipped += 1
                        continue
                    path = Path(entry.path)
                    rel = path.relative_to(root).as_posix()
                    found.append(SourceFile(rel, path, size))
    found.sort(key=lambda f: (f.rel.lower(), f.rel))
    return Listing(found, skipped)


def still_there(root: Path, device: int) -> bool:
    """Is the source still the one we started on (same device, listable)?"""
    try:
        if os.stat(root).st_dev != device:
            return False  # unmounted under us: the empty mount point of the parent is left
        os.listdir(root)
    except OSError:
        return False
    return True


def is_gone(exc: OSError, root: Path, device: int) -> bool:
    """Did this read fail because the card went away, rather than one file being bad?"""
    if exc.errno in GONE_ERRNOS or isinstance(exc, FileNotFoundError):
        return not still_there(root, device) or exc.errno in (errno.ENOTCONN, errno.ENODEV)
    return not still_there(root, device)
