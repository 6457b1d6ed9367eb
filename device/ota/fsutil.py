"""Durable file operations: every step that must survive power loss is fsync'd, in order."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """A rename or a new entry is only durable once its directory is synced."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    with path.open("rb") as fh:
        os.fsync(fh.fileno())


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``path.part``, fsync, rename over ``path``, fsync the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    with part.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(part, path)
    fsync_dir(path.parent)


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
        shutil.copyfileobj(src, dst, 1024 * 1024)
        dst.flush()
        os.fsync(dst.fileno())


def fsync_tree(root: Path) -> None:
    """Directories bottom-up, so every entry is durable before its parent is synced."""
    dirs = sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
    for directory in [*dirs, root]:
        fsync_dir(directory)
