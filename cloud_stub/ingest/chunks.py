"""Chunks received but not yet assembled, kept on disk so an ingest restart loses none.

One directory per upload attempt, named by media id, kind, whole-file sha256, size and chunk
size: a device that re-cuts a file differently (new chunk size after a broker change) starts a
fresh set instead of mixing incompatible chunks. Each chunk is its own file, made durable
before its ack goes out.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

from cloud_stub.ingest.durable import SyncBatch
from device.contracts.hashing import sha256_pieces
from device.contracts.protocol import MediaChunk


class PartialChunks:
    def __init__(self, root: Path) -> None:
        self.root = root / "partial"
        self.root.mkdir(parents=True, exist_ok=True)

    def directory(self, chunk: MediaChunk) -> Path:
        name = f"{chunk.media_id}.{chunk.kind}.{chunk.sha256}.{chunk.total_size}.{chunk.chunk_size}"
        return self.root / name

    def _part(self, chunk: MediaChunk, index: int) -> Path:
        return self.directory(chunk) / f"{index:07d}.chunk"

    def has(self, chunk: MediaChunk) -> bool:
        return self._part(chunk, chunk.index).exists()

    def put(self, chunk: MediaChunk, sync: SyncBatch) -> None:
        """Store one chunk; durable once ``sync`` is flushed (before its ack goes out)."""
        sync.write(self._part(chunk, chunk.index), [chunk.data])

    def parts(self, chunk: MediaChunk) -> list[Path]:
        return [self._part(chunk, i) for i in range(chunk.count)]

    def complete(self, chunk: MediaChunk) -> bool:
        return all(p.exists() for p in self.parts(chunk))

    def read(self, chunk: MediaChunk) -> Iterator[bytes]:
        for part in self.parts(chunk):
            yield part.read_bytes()

    def whole_sha256(self, chunk: MediaChunk) -> str:
        return sha256_pieces(self.read(chunk))

    def discard(self, chunk: MediaChunk) -> None:
        shutil.rmtree(self.directory(chunk), ignore_errors=True)
