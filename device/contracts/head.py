"""A head's weights (pack kind ``head``, docs/model-pack.md): a linear classifier over a
backbone's embedding, as the cloud writes it and the trap applies it.

The file is a NumPy ``.npz`` (read with ``allow_pickle=False``: no code in a pack is ever run)
holding three arrays:

- ``weights``: ``[classes, D]``, int8 (one scale per class) or float16;
- ``scales``: ``[classes]`` float32, the int8 step of each class's row (absent for float16);
- ``bias``: ``[classes]`` float32.

The class scores are ``softmax(weights * scales @ embedding + bias)``. Whatever the trainer
did to the embedding first (standardising each feature) is folded into ``weights`` and
``bias`` before quantising, so the trap applies one matrix product and nothing else. Per-class
scales keep a class with small weights from being rounded away by a class with large ones.

Both ends use this module: the cloud's trainer (``HeadWeights.fit_float`` then ``to_bytes``)
and the device (``HeadWeights.from_bytes`` then ``apply``), so a head means the same numbers
on both.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

import numpy as np

from device.contracts.manifest import HEAD_WEIGHTS, PackError

__all__ = ["HeadWeights"]

_INT8_MAX = 127


@dataclass(frozen=True)
class HeadWeights:
    weights: np.ndarray  # [classes, D], int8 or float16, as stored
    scales: np.ndarray | None  # [classes] float32 for int8 weights, else None
    bias: np.ndarray  # [classes] float32

    def __post_init__(self) -> None:
        # The float matrix the trap multiplies by, computed once per load, not per frame.
        matrix = self.weights.astype(np.float32)
        if self.scales is not None:
            matrix = matrix * self.scales[:, None]
        object.__setattr__(self, "_matrix", np.ascontiguousarray(matrix))

    # -- what it is -------------------------------------------------------------------------

    @property
    def classes(self) -> int:
        return int(self.weights.shape[0])

    @property
    def embedding_size(self) -> int:
        return int(self.weights.shape[1])

    @property
    def storage(self) -> str:
        """``int8`` or ``float16``, as the manifest's ``head.weights`` says."""
        return "int8" if self.weights.dtype == np.int8 else "float16"

    @property
    def matrix(self) -> np.ndarray:
        """The dequantised ``[classes, D]`` float32 weights."""
        return self._matrix  # type: ignore[attr-defined]

    # -- applying it ------------------------------------------------------------------------

    def logits(self, embedding: np.ndarray) -> np.ndarray:
        """``[classes]`` float32 logits for one ``[D]`` embedding (or ``[n, classes]`` for
        ``[n, D]``)."""
        return (embedding.astype(np.float32, copy=False) @ self.matrix.T) + self.bias

    def apply(self, embedding: np.ndarray) -> np.ndarray:
        """Class probabilities (softmax over the logits) for one ``[D]`` embedding, or a
        ``[n, D]`` batch."""
        z = self.logits(embedding)
        z = z - z.max(axis=-1, keepdims=True)
        e = np.exp(z)
        return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)

    # -- writing (the cloud) -------------------------------------------------------------------

    @classmethod
    def fit_float(cls, weights: np.ndarray, bias: np.ndarray, storage: str = "int8") -> HeadWeights:
        """Stored weights for a float ``[classes, D]`` matrix and ``[classes]`` bias:
        symmetric int8 with one scale per class (a row of zeros gets scale 1), or float16."""
        if storage not in HEAD_WEIGHTS:
            raise ValueError(f"head weights {storage!r} unknown (one of {', '.join(HEAD_WEIGHTS)})")
        w = np.asarray(weights, dtype=np.float64)
        b = np.asarray(bias, dtype=np.float32)
        if w.ndim != 2 or b.shape != (w.shape[0],):
            raise ValueError(f"weights {w.shape} and bias {b.shape} do not make a head")
        if storage == "float16":
            return cls(w.astype(np.float16), None, b)
        peak = np.abs(w).max(axis=1)
        scales = np.where(peak > 0, peak / _INT8_MAX, 1.0)
        q = np.clip(np.rint(w / scales[:, None]), -_INT8_MAX, _INT8_MAX).astype(np.int8)
        return cls(q, scales.astype(np.float32), b)

    def to_bytes(self) -> bytes:
        arrays = {"weights": self.weights, "bias": self.bias}
        if self.scales is not None:
            arrays["scales"] = self.scales
        out = io.BytesIO()
        np.savez_compressed(out, **arrays)
        return out.getvalue()

    # -- reading (the device) ------------------------------------------------------------------

    @classmethod
    def from_bytes(
        cls, data: bytes, storage: str, classes: int, embedding_size: int
    ) -> HeadWeights:
        """The weights in ``data``, checked against what the manifest says they are;
        PackError (one line) for anything else."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise PackError(f"head weights unreadable ({exc})") from None
        want = {"weights", "bias"} | ({"scales"} if storage == "int8" else set())
        if set(arrays) != want:
            raise PackError(
                f"head weights hold {sorted(arrays)}, a {storage} head holds {sorted(want)}"
            )
        weights, bias = arrays["weights"], arrays["bias"]
        dtype = np.int8 if storage == "int8" else np.float16
        if weights.dtype != dtype or weights.shape != (classes, embedding_size):
            raise PackError(
                f"head weights are {weights.dtype} {list(weights.shape)}, the manifest says "
                f"{storage} [{classes}, {embedding_size}]"
            )
        if bias.dtype != np.float32 or bias.shape != (classes,):
            raise PackError(
                f"head bias is {bias.dtype} {list(bias.shape)}, need float32 [{classes}]"
            )
        scales = arrays.get("scales")
        if scales is not None and (scales.dtype != np.float32 or scales.shape != (classes,)):
            raise PackError(
                f"head scales are {scales.dtype} {list(scales.shape)}, need float32 [{classes}]"
            )
        finite = [bias, *([scales] if scales is not None else [])]
        if storage == "float16":
            finite.append(weights)
        if not all(np.isfinite(a).all() for a in finite):
            raise PackError("head weights hold a value that is not finite")
        return cls(weights, scales, bias)
