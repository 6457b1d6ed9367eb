"""sha256 as lowercase hex: of bytes, of a stream of pieces, of a file read in blocks.

The model packs, the media files and the wire protocol all name their content by this digest,
so every side computes it the same way. A file is streamed (1 MiB blocks): a pack's model or a
full-resolution frame is never read into memory only to be hashed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

__all__ = ["BLOCK_BYTES", "sha256_file", "sha256_hex", "sha256_pieces"]

BLOCK_BYTES = 1 << 20


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_pieces(pieces: Iterable[bytes]) -> str:
    """The digest of the pieces joined, without joining them."""
    digest = hashlib.sha256()
    for piece in pieces:
        digest.update(piece)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    with path.open("rb") as fh:
        return sha256_pieces(iter(lambda: fh.read(BLOCK_BYTES), b""))
