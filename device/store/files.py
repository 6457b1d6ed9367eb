"""Crash-safe files under the data dir.

A file reaches its final name only complete: ``x.part`` in the same directory, fsync,
``os.replace``, fsync the directory (``device.contracts.durable``, shared with OTA and the
cloud). The data dir itself is never created here: if it vanished (an unmounted card),
recreating it on the root file system would hide the fault.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from device.contracts import durable
from device.contracts.durable import PART_SUFFIX, fsync_dir
from device.contracts.hashing import sha256_file, sha256_hex

__all__ = [
    "MEDIA_DIR",
    "PART_SUFFIX",
    "THUMB_DIR",
    "DataDirUnavailable",
    "atomic_write",
    "dated_parts",
    "ensure_subdir",
    "fsync_dir",
    "jpeg_problem",
    "media_relpath",
    "sha256_file",
    "sha256_hex",
]

MEDIA_DIR = "media"
THUMB_DIR = "thumbs"


class DataDirUnavailable(OSError):
    """The data dir is missing or not writable."""


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
    """``directory/name`` written durably, readable by the agent's group only (0640); the
    directory must exist (``ensure_subdir``)."""
    return durable.atomic_write(directory / name, data, mode=0o640)


def dated_parts(moment: datetime) -> tuple[str, str, str]:
    return (f"{moment.year:04d}", f"{moment.month:02d}", f"{moment.day:02d}")


def media_relpath(moment: datetime, media_id: str, top: str = MEDIA_DIR) -> Path:
    return Path(top, *dated_parts(moment), f"{media_id}.jpg")


def jpeg_problem(data: bytes) -> str | None:
    """A cheap structural check, so capture never pays for a full decode."""
    if not data:
        return "empty frame (0 bytes)"
    if data[:2] != b"\xff\xd8":
        return "not a JPEG (no SOI marker)"
    if data.rstrip(b"\x00")[-2:] != b"\xff\xd9":
        return "truncated JPEG (no EOI marker)"
    return None
