"""Files written during one ingest batch become durable together, just before it commits.

An fsync per file and per directory cost ~5 flushes per thumbnail and capped ingest at a few
hundred messages a second. Nothing is acknowledged before the batch commits, so the files only
need to be on disk by then: one ``syncfs`` of the filesystem per batch does that (Linux; it
reports write-back errors since 5.8). Elsewhere each file and directory is fsynced instead
(``device.contracts.durable``, the fsync everyone else uses).
If the machine dies before the barrier, no row points at the files and nothing was acked:
the device sends them again, and assembled files are checked against their sha256 anyway.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from device.contracts.durable import fsync_dir, fsync_file


def _load_syncfs() -> Callable[[int], int] | None:
    """libc's ``syncfs(fd)``, or None where the C library has none."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        fn = libc.syncfs
    except (OSError, AttributeError, TypeError):
        return None
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_SYNCFS = _load_syncfs()
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)


class SyncBatch:
    def __init__(self, anchor: Path) -> None:
        self.anchor = anchor  # any path on the filesystem the files live on
        self._files: set[Path] = set()
        self._dirs: set[Path] = set()
        # Directories already made: one mkdir per deployment, not one per file. A directory
        # removed behind our back shows up as the open's FileNotFoundError, and is made again.
        self._made: set[Path] = set()

    def write(self, target: Path, pieces: Iterable[bytes]) -> None:
        """Write ``target`` atomically (temp name, rename); durable after ``flush()``."""
        parent = target.parent
        if parent not in self._made:
            parent.mkdir(parents=True, exist_ok=True)
            self._made.add(parent)
        tmp = target.with_name(target.name + ".tmp")
        try:
            fd = os.open(tmp, _WRITE_FLAGS, 0o666)
        except FileNotFoundError:
            self._made.discard(parent)
            parent.mkdir(parents=True, exist_ok=True)
            self._made.add(parent)
            fd = os.open(tmp, _WRITE_FLAGS, 0o666)
        try:
            for piece in pieces:
                view = memoryview(piece)
                while view:
                    view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, target)
        self._files.add(target)
        self._dirs.add(parent)
        self._dirs.add(parent.parent)  # the parent may have just been created

    def flush(self) -> None:
        """Make every file written since the last flush durable, with its directory entry."""
        if not self._files:
            return
        if _SYNCFS is not None:
            fd = os.open(self.anchor, os.O_RDONLY | os.O_DIRECTORY)
            try:
                if _SYNCFS(fd) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"syncfs: {os.strerror(err)}")
            finally:
                os.close(fd)
        else:
            for path in self._files:
                if path.exists():
                    fsync_file(path)
            for path in self._dirs:
                if path.exists():
                    fsync_dir(path)
        self._files.clear()
        self._dirs.clear()

    def discard(self) -> None:
        """Forget pending files (the batch failed; nothing will point at them)."""
        self._files.clear()
        self._dirs.clear()
