"""The interface every media backend offers, and the one rule for the paths it takes."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path, PurePath, PurePosixPath
from typing import BinaryIO, Protocol

from cloud_stub.media.errors import MediaPathError

# A path inside the store: "<deployment>/<mediaID>.jpg". The store keeps Path objects today.
Relative = str | PurePath


class MediaStorage(Protocol):
    name: str  # "local" | "gcs"

    def put(self, relative: Relative, pieces: Iterable[bytes]) -> None:
        """Store a file whole or not at all; durable by ``flush()`` at the latest."""
        ...

    def flush(self) -> None:
        """Make every ``put`` since the last flush durable (before the rows commit)."""
        ...

    def discard(self) -> None:
        """Forget the pending puts of a failed batch: no row will point at them."""
        ...

    def open(self, relative: Relative) -> BinaryIO:
        """Read a file; raises MediaMissing, or MediaUnavailable when the store cannot say."""
        ...

    def exists(self, relative: Relative) -> bool: ...

    def url(self, relative: Relative) -> str:
        """How Camtrap DP ``filePath`` and review links name the file."""
        ...

    def local_path(self, relative: Relative) -> Path | None:
        """The file on this machine's disk (to send it as it is), or None for remote stores."""
        ...


def checked(relative: Relative) -> PurePosixPath:
    """``relative`` as a posix path that stays inside the store, or MediaPathError."""
    text = relative.as_posix() if isinstance(relative, PurePath) else str(relative)
    path = PurePosixPath(text)
    if not text or path.is_absolute() or ".." in path.parts or path == PurePosixPath("."):
        raise MediaPathError(f"media path {text!r}: must be relative, inside the media store")
    return path
