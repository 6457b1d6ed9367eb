"""Media as files under one directory: the default store, as the single-host stub has it.

Writes go through the ingest's ``SyncBatch``: each file lands whole (temp name, rename) and
the batch's files become durable with one ``syncfs`` at ``flush()``, before the rows commit.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from cloud_stub.ingest.durable import SyncBatch
from cloud_stub.media.errors import MediaMissing, MediaUnavailable
from cloud_stub.media.storage import Relative, checked
from device.contracts.exitcodes import Exit


class LocalMedia:
    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        # Anchored on the media tree itself: syncfs flushes the filesystem the files are on,
        # which may be a mount of its own.
        self._batch = SyncBatch(self.root)

    def path(self, relative: Relative) -> Path:
        return self.root / checked(relative)

    def put(self, relative: Relative, pieces: Iterable[bytes]) -> None:
        target = self.path(relative)
        try:
            self._batch.write(target, pieces)
        except OSError as exc:
            raise MediaUnavailable(
                f"{target}: cannot write: {exc.strerror or exc}", Exit.CANT_CREATE
            ) from exc

    def flush(self) -> None:
        try:
            self._batch.flush()
        except OSError as exc:
            raise MediaUnavailable(
                f"{self.root}: cannot flush media to disk: {exc.strerror or exc}", Exit.IO_ERROR
            ) from exc

    def discard(self) -> None:
        self._batch.discard()

    def open(self, relative: Relative) -> BinaryIO:
        target = self.path(relative)
        try:
            return target.open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise MediaMissing(f"{target}: no such media file") from exc
        except OSError as exc:
            raise MediaUnavailable(
                f"{target}: cannot read: {exc.strerror or exc}", Exit.IO_ERROR
            ) from exc

    def exists(self, relative: Relative) -> bool:
        return self.path(relative).is_file()

    def url(self, relative: Relative) -> str:
        return checked(relative).as_posix()

    def local_path(self, relative: Relative) -> Path | None:
        return self.path(relative)
