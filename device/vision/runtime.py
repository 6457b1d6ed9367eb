"""The TFLite interpreter, wrapped so the rest of vision never touches tensor details.

``ai_edge_litert`` is preferred: its x86 int8 kernels are about 20x faster than
tflite-runtime 2.14's, and it ships aarch64 cp311 wheels. tflite-runtime is the fallback.
Shapes, dtypes and quantisation are read from the model, never assumed.

A model has one image input and either one output (the class scores) or two: the scores and
an embedding, the feature vector the classifier reads (docs/model-pack.md, ``model.embedding``).
TFLite does not promise an output order, so which output is the embedding is decided by the
pack's manifest (by size, or by tensor name when both outputs have one size), never by index.

A head pack runs as a ``HeadModel``: its backbone's interpreter, then the head's weights
applied with numpy to the embedding of the same invoke (device.contracts.head); its scores are
the head's class probabilities, and the backbone's own class output is never read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from device.contracts.head import HeadWeights
from device.contracts.manifest import EmbeddingSpec, PackError

if TYPE_CHECKING:
    from device.vision.pack import ModelPack

SUPPORTED_DTYPES = (np.uint8, np.int8, np.float32)


class ModelError(ValueError):
    """The model file cannot be used; the message is one line."""


def interpreter_class() -> tuple[type, str]:
    """The Interpreter class and the runtime's name."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai_edge_litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, "tflite_runtime"
    except ImportError as exc:
        raise ModelError("no TFLite runtime: install ai-edge-litert or tflite-runtime") from exc


@dataclass(frozen=True)
class TensorSpec:
    index: int
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float
    zero_point: int
    name: str = ""

    @property
    def quantized(self) -> bool:
        return self.dtype != np.float32 and self.scale > 0

    def dequantise(self, raw: np.ndarray) -> np.ndarray:
        """``raw`` (a tensor of this spec) as float32 values."""
        if self.quantized:
            return (raw.astype(np.float32) - self.zero_point) * self.scale
        return raw.astype(np.float32, copy=False)


def _spec(detail: dict[str, Any], what: str) -> TensorSpec:
    dtype = np.dtype(detail["dtype"])
    if dtype not in [np.dtype(d) for d in SUPPORTED_DTYPES]:
        raise ModelError(f"unsupported {what} tensor type {dtype.name} (need uint8, int8, float32)")
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return TensorSpec(
        index=int(detail["index"]),
        shape=tuple(int(d) for d in detail["shape"]),
        dtype=dtype,
        scale=float(scale),
        zero_point=int(zero_point),
        name=str(detail.get("name", "")),
    )


def _shape_text(spec: TensorSpec) -> str:
    return f"{spec.name or f'#{spec.index}'} {list(spec.shape)}"


def _scores_and_embedding(
    outputs: list[TensorSpec], embedding: EmbeddingSpec | None
) -> tuple[TensorSpec, TensorSpec | None]:
    """Which output holds the scores and which the embedding, as the manifest says."""
    if len(outputs) == 1:
        if embedding is not None:
            raise ModelError(
                f"manifest model.embedding names a {embedding.size}-value embedding "
                "but the model has only one output"
            )
        return outputs[0], None
    listed = ", ".join(_shape_text(o) for o in outputs)
    if len(outputs) != 2:
        raise ModelError(f"need one or two output tensors, model has {len(outputs)} ({listed})")
    if embedding is None:
        raise ModelError(
            f"model has two outputs ({listed}) but the manifest names no model.embedding"
        )
    if embedding.tensor is not None:
        chosen = [o for o in outputs if o.name == embedding.tensor]
        if not chosen:
            raise ModelError(
                f"manifest model.embedding.tensor {embedding.tensor!r} is not an output "
                f"of the model ({listed})"
            )
    else:
        chosen = [o for o in outputs if o.shape == (1, embedding.size)]
        if len(chosen) > 1:
            raise ModelError(
                f"both outputs are [1, {embedding.size}] ({listed}): "
                "name the embedding with model.embedding.tensor"
            )
        if not chosen:
            raise ModelError(
                f"manifest model.embedding.size {embedding.size} matches no output ({listed})"
            )
    found = chosen[0]
    if found.shape != (1, embedding.size):
        raise ModelError(
            f"embedding output {_shape_text(found)} is not the manifest's [1, {embedding.size}]"
        )
    scores = next(o for o in outputs if o is not found)
    return scores, found


class Model:
    """One loaded interpreter: one image input, the score output and an optional embedding.

    Not thread-safe: one engine (and so one interpreter) per worker thread.
    """

    def __init__(
        self, content: bytes, threads: int = 1, embedding: EmbeddingSpec | None = None
    ) -> None:
        """``embedding``: the manifest's ``model.embedding`` (None: the model must have a
        single output). A model that disagrees with it raises ModelError."""
        cls, self.runtime = interpreter_class()
        try:
            self._interp = cls(model_content=content, num_threads=threads)
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"not a loadable TFLite model: {first}") from exc
        inputs = self._interp.get_input_details()
        outputs = self._interp.get_output_details()
        if len(inputs) != 1:
            raise ModelError(f"need one input tensor, model has {len(inputs)}")
        self.input = _spec(inputs[0], "input")
        output_specs = [_spec(detail, "output") for detail in outputs]
        self.output, self.embedding = _scores_and_embedding(output_specs, embedding)
        if len(self.input.shape) != 4 or self.input.shape[0] != 1 or self.input.shape[3] != 3:
            raise ModelError(f"input shape {list(self.input.shape)} is not [1, h, w, 3]")
        if self.output.shape[0] != 1 or len(self.output.shape) != 2:
            raise ModelError(f"output shape {list(self.output.shape)} is not [1, classes]")

    @classmethod
    def for_pack(cls, pack: ModelPack, threads: int = 1) -> Model:
        """The pack's model, its outputs told apart by the pack's manifest (for a head: its
        backbone's model with the head applied, a ``HeadModel``); PackError (one line naming
        the pack) if the model cannot be used or disagrees with the manifest."""
        try:
            if pack.head is not None:
                return HeadModel(pack.model_content, pack.head, threads, pack.embedding)
            return cls(pack.model_content, threads=threads, embedding=pack.embedding)
        except ModelError as exc:
            raise PackError(f"model pack {pack.path}: {exc}") from None

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) the model expects."""
        return self.input.shape[2], self.input.shape[1]

    @property
    def num_classes(self) -> int:
        return self.output.shape[1]

    @property
    def embedding_size(self) -> int | None:
        """Values in the embedding, or None for a model without one."""
        return None if self.embedding is None else self.embedding.shape[1]

    def set_input(self, batch: np.ndarray) -> None:
        """``batch`` must already have the input's shape and dtype (see preprocess)."""
        self._interp.set_tensor(self.input.index, batch)

    def invoke(self) -> None:
        self._interp.invoke()

    def raw_output(self) -> np.ndarray:
        return self._interp.get_tensor(self.output.index)[0]

    def scores(self) -> np.ndarray:
        """The score output of the last invoke as float32, dequantised."""
        return self.output.dequantise(self.raw_output())

    def embedding_values(self) -> np.ndarray | None:
        """The embedding of the last invoke as float32, dequantised (None: the model has
        none)."""
        if self.embedding is None:
            return None
        return self.embedding.dequantise(self._interp.get_tensor(self.embedding.index)[0])

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.set_input(batch)
        self.invoke()
        return self.scores()

    def run_with_embedding(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Scores and embedding from one invoke (the embedding is None without one)."""
        self.set_input(batch)
        self.invoke()
        return self.scores(), self.embedding_values()


class HeadModel(Model):
    """A backbone's interpreter with a head on its embedding: the same interface as
    ``Model``, whose scores are the head's class probabilities (``num_classes`` of them)."""

    def __init__(
        self,
        content: bytes,
        head: HeadWeights,
        threads: int = 1,
        embedding: EmbeddingSpec | None = None,
    ) -> None:
        super().__init__(content, threads=threads, embedding=embedding)
        if self.embedding is None:
            raise ModelError("the backbone has no embedding output for the head to read")
        if self.embedding.shape[1] != head.embedding_size:
            raise ModelError(
                f"the head reads {head.embedding_size} values, the backbone's embedding has "
                f"{self.embedding.shape[1]}"
            )
        self.head = head

    @property
    def num_classes(self) -> int:
        return self.head.classes

    def scores(self) -> np.ndarray:
        """The head's class probabilities for the last invoke."""
        features = self.embedding_values()
        assert features is not None  # __init__ refuses a backbone without an embedding
        return self.head.apply(features)

    def run_with_embedding(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        self.set_input(batch)
        self.invoke()
        features = self.embedding_values()
        assert features is not None
        return self.head.apply(features), features
