"""The features of every labelled photo: from the cache when known, else embedded now."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cloud_stub.training.cache import EmbeddingCache
from cloud_stub.training.embeddings import Embedded, Embedder

__all__ = ["Features", "features_for"]

_WRITE_EVERY = 256  # photos per cache transaction: a killed run keeps what it embedded


@dataclass
class Features:
    embeddings: np.ndarray  # [n, D] float32, one row per usable photo, in input order
    scores: np.ndarray  # [n, classes] float32, the pack's own probabilities
    usable: list[int]  # index into the input of each row
    unreadable: dict[int, str] = field(default_factory=dict)  # input index -> why
    embedded_now: int = 0
    from_cache: int = 0
    embed_seconds: float = 0.0

    @property
    def embed_per_s(self) -> float | None:
        return self.embedded_now / self.embed_seconds if self.embedded_now else None


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def features_for(paths: Sequence[Path], embedder: Embedder, cache: EmbeddingCache) -> Features:
    shas = [_sha256(p) for p in paths]
    unreadable = {i: "cannot read the file" for i, s in enumerate(shas) if s is None}
    known = cache.get(embedder.space, [s for s in shas if s is not None])
    missing = [i for i, s in enumerate(shas) if s is not None and s not in known]
    first_of: dict[str, int] = {}
    for i in missing:
        first_of.setdefault(shas[i] or "", i)  # one embedding per distinct content
    fresh: dict[str, Embedded] = {}
    pending: dict[str, Embedded] = {}
    started = time.perf_counter()
    order = list(first_of.values())
    for i, (_, result) in zip(order, embedder.embed(paths[i] for i in order), strict=True):
        sha = shas[i] or ""
        if isinstance(result, str):
            unreadable[i] = result
            continue
        fresh[sha] = pending[sha] = result
        if len(pending) >= _WRITE_EVERY:
            cache.put(embedder.space, pending)
            pending = {}
    if pending:
        cache.put(embedder.space, pending)
    seconds = time.perf_counter() - started
    everything = {**known, **fresh}
    for i in missing:  # copies of a photo that could not be decoded cannot be either
        if shas[i] not in everything:
            unreadable.setdefault(i, unreadable[first_of[shas[i] or ""]])
    usable = [i for i, s in enumerate(shas) if s is not None and s in everything]
    dim, classes = embedder.embedding_size, embedder.model.num_classes
    rows = [everything[shas[i] or ""] for i in usable]
    return Features(
        embeddings=np.stack([r.embedding for r in rows]) if rows else np.zeros((0, dim)),
        scores=np.stack([r.scores for r in rows]) if rows else np.zeros((0, classes)),
        usable=usable,
        unreadable=unreadable,
        embedded_now=len(fresh),
        from_cache=sum(1 for i in usable if shas[i] in known),
        embed_seconds=seconds,
    )
