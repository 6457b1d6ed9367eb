"""Embeddings already computed, by embedding space and media sha256 (one SQLite file).

A photo's features depend only on its bytes and on the model and framing that made them
(``Embedder.space``), so a second run over the same reviews embeds nothing, and a run with one
more reviewed event embeds only that event's frames. Vectors are stored as float32 bytes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from cloud_stub.training.embeddings import Embedded
from cloud_stub.training.errors import TrainingError

__all__ = ["CACHE_FILE", "EmbeddingCache", "default_cache_dir"]

CACHE_FILE = "embeddings.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS features (
    space        TEXT NOT NULL,  -- model sha256 and framing rule (Embedder.space)
    media_sha256 TEXT NOT NULL,
    embedding    BLOB NOT NULL,  -- float32
    scores       BLOB NOT NULL,  -- float32, the pack's own class probabilities
    PRIMARY KEY (space, media_sha256)
)
"""


def default_cache_dir(ingest_root: Path | None) -> Path:
    """``<root>/embeddings`` beside an ingest store, else the user's cache."""
    if ingest_root is not None:
        return Path(ingest_root) / "embeddings"
    return Path.home() / ".cache" / "camtrap" / "embeddings"


class EmbeddingCache:
    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / CACHE_FILE
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=30.0)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise TrainingError(
                f"embedding cache {self.path}: cannot open ({reason}); give --cache DIR"
            ) from None

    def close(self) -> None:
        self.db.close()

    def get(self, space: str, shas: Iterable[str]) -> dict[str, Embedded]:
        wanted = list(dict.fromkeys(shas))
        found: dict[str, Embedded] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            try:
                rows = self.db.execute(
                    "SELECT media_sha256, embedding, scores FROM features"
                    f" WHERE space = ? AND media_sha256 IN ({marks})",
                    (space, *chunk),
                ).fetchall()
            except sqlite3.Error as exc:
                raise TrainingError(f"embedding cache {self.path}: cannot read ({exc})") from None
            for sha, embedding, scores in rows:
                found[sha] = Embedded(
                    np.frombuffer(embedding, np.float32).copy(),
                    np.frombuffer(scores, np.float32).copy(),
                )
        return found

    def put(self, space: str, items: dict[str, Embedded]) -> None:
        try:
            with self.db:
                self.db.executemany(
                    "INSERT OR REPLACE INTO features VALUES (?, ?, ?, ?)",
                    [
                        (
                            space,
                            sha,
                            e.embedding.astype(np.float32).tobytes(),
                            e.scores.astype(np.float32).tobytes(),
                        )
                        for sha, e in items.items()
                    ],
                )
        except sqlite3.Error as exc:
            raise TrainingError(f"embedding cache {self.path}: cannot write ({exc})") from None
