"""Crash-safe files under the data dir.

A file reaches its final name only complete: ``x.part`` in the same directory, fsync,
``os.replace``, fsync the directory. The data dir itself is never created here: if it vanished
(an unmounted card), recreating it on the root file system would hide the fault.
"""

from __future__ import annotations

import hashlib
import os
from datetime import datetime
from pathlib import Path

PART_SUFFIX = ".part"
MEDIA_DIR = "media"
THUMB_DIR = "thumbs"


class DataDirUnavailable(OSError):
    """The data dir is missing or not writable."""


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_subdir(root: Path, *parts: str) -> Path:
    """Create ``root/parts...`` one level at a time, never ``root`` itself."""
    if not root.is_dir():
        raise DataDirUnavailable(f"data dir {root} is missing")
    current = root
    for part in parts:
        child = current / part
        try:
            os.mkdir(child)
        except FileExistsError:
            pass
        else:
            fsync_dir(current)
        current = child
    return current


def atomic_write(directory: Path, name: str, data: bytes) -> Path:
    final = directory / name
    part = directory / (name + PART_SUFFIX)
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(part, final)
    fsync_dir(directory)
    return final


def dated_parts(moment: datetime) -> tuple[str, str, str]:
    return (f"{moment.year:04d}", f"{moment.month:02d}", f"{moment.day:02d}")


def media_relpath(moment: datetime, media_id: str, top: str = MEDIA_DIR) -> Path:
    return Path(top, *dated_parts(moment), f"{media_id}.jpg")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def jpeg_problem(data: bytes) -> str | None:
    """A cheap structural check, so capture never pays for a full decode."""
    if not data:
        return "empty frame (0 bytes)"
    if data[:2] != b"\xff\xd8":
        return "not a JPEG (no SOI marker)"
    if data.rstrip(b"\x00")[-2:] != b"\xff\xd9":
        return "truncated JPEG (no EOI marker)"
    return None
