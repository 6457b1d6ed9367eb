"""Files that survive power loss: every step that must reach the disk is fsync'd, in order.

A file reaches its final name only complete: ``NAME.part`` in the same directory, written and
fsync'd, renamed over ``NAME`` (rename(2) is atomic), then the directory is fsync'd so the
rename itself is on disk. A reader, or a restart after a crash, sees the old file or the new
one, never half of one. Directories are never created here unless the caller asks: the device's
data dir missing (an unmounted card) must stay an error, not be recreated on the root fs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

__all__ = [
    "PART_SUFFIX",
    "atomic_symlink",
    "atomic_write",
    "copy_durably",
    "fsync_dir",
    "fsync_file",
    "fsync_tree",
    "sync_filesystem",
]

PART_SUFFIX = ".part"
_COPY_BLOCK = 1 << 20


def fsync_dir(path: Path) -> None:
    """A rename or a new entry is only durable once its directory is synced."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """Directories bottom-up, so every entry is durable before its parent is synced."""
    dirs = sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
    for directory in [*dirs, root]:
        fsync_dir(directory)


def sync_filesystem(path: Path) -> None:
    """Everything written to the filesystem holding ``path`` reaches the disk (syncfs(2)):
    one call for a whole batch of files written with ``sync=False``."""
    import ctypes
    import ctypes.util

    fd = os.open(path, os.O_RDONLY)
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        if libc.syncfs(fd) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno), str(path))
    except AttributeError:  # a libc without syncfs: the whole system, then
        os.sync()
    finally:
        os.close(fd)


def atomic_write(
    path: Path, data: bytes, *, mode: int = 0o666, make_parents: bool = False, sync: bool = True
) -> Path:
    """Make ``path`` hold ``data``, all or nothing: write ``path.part``, fsync, rename over
    ``path``, fsync the directory. ``mode`` is the new file's (less the umask). On an error
    the ``.part`` is removed and ``path`` is untouched.

    ``sync=False`` leaves both fsyncs to one ``sync_filesystem`` for a batch: only for a file
    nothing refers to until that call has returned (a crash before it may leave the file
    short, under its final name, and whoever refers to it later must rewrite it)."""
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + PART_SUFFIX)
    try:
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(part, path)
    except BaseException:
        with contextlib.suppress(OSError):
            part.unlink()
        raise
    if sync:
        fsync_dir(path.parent)
    return path


def atomic_symlink(link: Path, target: str) -> None:
    """Point ``link`` at ``target`` in one step: a temp symlink renamed over the old one.

    rename(2) replaces the old link atomically, so a reader (or a crash) sees either the old
    target or the new one, never no link and never a half-written one.
    """
    tmp = link.with_name(f".{link.name}.tmp-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)
    fsync_dir(link.parent)


def copy_durably(source: Path, target: Path) -> None:
    """Copy one file and fsync it (the caller fsyncs the directory once for all files)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with source.open("rb") as src, target.open("wb") as dst:
        shutil.copyfileobj(src, dst, _COPY_BLOCK)
        dst.flush()
        os.fsync(dst.fileno())
