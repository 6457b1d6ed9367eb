"""A backbone's embedding (and its own class scores) of a photo, framed exactly as the trap
frames its "full" crop.

A head meets the features the trap computes, so it is fitted on those and no others: the same
decode (``load_image``, at the size the trap decodes when it also cuts tiles, its default),
the camera's info bar cut off (``info_bar.detect_in_image``), the manifest's resize mode
framing the rest (``full_box`` inside the scene box), the same resampling (``crop_resize``),
input encoding (``InputEncoder``) and interpreter (``Model.run_with_embedding``), as
``device.vision.engine`` does for its crops. This module is the cloud's one door into
``device.vision`` (pyproject's import contracts).

The backbone's own scores come from the same invoke: for a full pack they are the model the
trap serves today, the baseline a head must beat.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cloud_stub.training.errors import TrainingError
from device.contracts.pack import PackContents
from device.vision.info_bar import detect_in_image
from device.vision.preprocess import (
    ImageError,
    InputEncoder,
    crop_resize,
    full_box,
    load_image,
    to_rgb,
)
from device.vision.runtime import Model, ModelError

__all__ = ["CROP_RULE", "Embedded", "Embedder"]

# Changes whenever the framing above changes: cached features of another rule are not reused.
CROP_RULE = "full-crop/1"
# vision.tile_fraction's default: with tiles on (the default) the trap decodes photos with a
# short side of at least input / fraction, and the full crop is resampled from that.
TRAP_TILE_FRACTION = 0.6
DECODE_AHEAD = 8


@dataclass(frozen=True)
class Embedded:
    embedding: np.ndarray  # [D] float32
    scores: np.ndarray  # [classes] float32 probabilities of the pack's own classifier


class Embedder:
    """One pack's interpreter (not thread-safe: one per thread); photos are decoded and
    framed in a small thread pool while the interpreter runs."""

    def __init__(self, pack: PackContents, threads: int = 2, decode_workers: int = 2) -> None:
        manifest = pack.manifest
        spec = manifest.model
        if spec is None:
            raise TrainingError(f"model pack {pack.path}: has no model to embed with")
        if spec.embedding is None:
            raise TrainingError(
                f"model pack {pack.path}: its model has no embedding output (model.embedding)"
            )
        try:
            self.model = Model(pack.files[spec.file], threads=threads, embedding=spec.embedding)
        except ModelError as exc:
            raise TrainingError(f"model pack {pack.path}: {exc}") from None
        self.pack = pack
        self.resize = spec.preprocess.resize
        self.logits = spec.output == "logits"
        self.encoder = InputEncoder(self.model.input, spec.preprocess.mean, spec.preprocess.std)
        self.decode_workers = decode_workers
        model_sha = manifest.model_sha256 or ""
        framing = json.dumps([CROP_RULE, spec.preprocess.model_dump(mode="json")])
        # Features are the model's and the framing's: the cache is keyed by both.
        self.space = f"{model_sha}:{hashlib.sha256(framing.encode()).hexdigest()[:16]}"

    @property
    def input_size(self) -> tuple[int, int]:
        return self.model.input_size

    @property
    def embedding_size(self) -> int:
        size = self.model.embedding_size
        assert size is not None  # __init__ refuses a model without one
        return size

    def crop(self, path: Path) -> np.ndarray:
        """The trap's full crop of the photo at ``path``: (h, w, 3) uint8 at the model's input
        size. Raises ``ImageError`` for a photo that cannot be decoded."""
        side = math.ceil(min(self.input_size) / TRAP_TILE_FRACTION)
        image = load_image(path, side)
        left, top, right, bottom = detect_in_image(image).scene_box(image.size)
        box = full_box((right - left, bottom - top), self.resize, self.input_size)
        moved = (box[0] + left, box[1] + top, box[2] + left, box[3] + top)
        return crop_resize(image, moved, self.input_size, pad=self.resize == "pad")

    def crop_or_reason(self, path: Path) -> np.ndarray | str:
        """``crop(path)``, or why the photo cannot be decoded (one line)."""
        try:
            return self.crop(path)
        except ImageError as exc:
            return str(exc)

    def run(self, rgb: np.ndarray) -> Embedded:
        scores, embedding = self.model.run_with_embedding(self.encoder.encode(rgb))
        assert embedding is not None
        if self.logits:
            e = np.exp(scores - scores.max())
            scores = e / e.sum()
        return Embedded(embedding.astype(np.float32), scores.astype(np.float32))

    def run_golden(self, jpeg: bytes) -> Embedded:
        """A golden image as the trap's self-test runs it: decoded whole, framed by the
        resize mode, no info bar cut."""
        with Image.open(io.BytesIO(jpeg)) as im:
            im.load()
            image = to_rgb(im)
        box = full_box(image.size, self.resize, self.input_size)
        return self.run(crop_resize(image, box, self.input_size, pad=self.resize == "pad"))

    def embed(self, paths: Iterable[Path]) -> Iterator[tuple[Path, Embedded | str]]:
        """``(path, features)`` for each photo in order, or ``(path, why not)`` for one that
        cannot be decoded."""

        waiting: deque[tuple[Path, Future[np.ndarray | str]]] = deque()
        with ThreadPoolExecutor(max_workers=self.decode_workers) as pool:
            # Photos are decoded a few ahead of the interpreter, never all at once.
            for path in paths:
                waiting.append((path, pool.submit(self.crop_or_reason, path)))
                if len(waiting) > DECODE_AHEAD:
                    yield self._finish(*waiting.popleft())
            while waiting:
                yield self._finish(*waiting.popleft())

    def _finish(self, path: Path, framed: Future[np.ndarray | str]) -> tuple[Path, Embedded | str]:
        rgb = framed.result()
        return path, (rgb if isinstance(rgb, str) else self.run(rgb))
