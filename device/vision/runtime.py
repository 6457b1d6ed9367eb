"""The TFLite interpreter, wrapped so the rest of vision never touches tensor details.

``ai_edge_litert`` is preferred: its x86 int8 kernels are about 20x faster than
tflite-runtime 2.14's, and it ships aarch64 cp311 wheels. tflite-runtime is the fallback.
Shapes, dtypes and quantisation are read from the model, never assumed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

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

    @property
    def quantized(self) -> bool:
        return self.dtype != np.float32 and self.scale > 0


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
    )


class Model:
    """One loaded interpreter with a single image input and a single score output.

    Not thread-safe: one engine (and so one interpreter) per worker thread.
    """

    def __init__(self, content: bytes, threads: int = 1) -> None:
        cls, self.runtime = interpreter_class()
        try:
            self._interp = cls(model_content=content, num_threads=threads)
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"not a loadable TFLite model: {first}") from exc
        inputs = self._interp.get_input_details()
        outputs = self._interp.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(
                f"need one input and one output tensor, model has {len(inputs)} and {len(outputs)}"
            )
        self.input = _spec(inputs[0], "input")
        self.output = _spec(outputs[0], "output")
        if len(self.input.shape) != 4 or self.input.shape[0] != 1 or self.input.shape[3] != 3:
            raise ModelError(f"input shape {list(self.input.shape)} is not [1, h, w, 3]")
        if self.output.shape[0] != 1 or len(self.output.shape) != 2:
            raise ModelError(f"output shape {list(self.output.shape)} is not [1, classes]")

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) the model expects."""
        return self.input.shape[2], self.input.shape[1]

    @property
    def num_classes(self) -> int:
        return self.output.shape[1]

    def set_input(self, batch: np.ndarray) -> None:
        """``batch`` must already have the input's shape and dtype (see preprocess)."""
        self._interp.set_tensor(self.input.index, batch)

    def invoke(self) -> None:
        self._interp.invoke()

    def raw_output(self) -> np.ndarray:
        return self._interp.get_tensor(self.output.index)[0]

    def scores(self) -> np.ndarray:
        """The output as float32, dequantised."""
        raw = self.raw_output()
        if self.output.quantized:
            return (raw.astype(np.float32) - self.output.zero_point) * self.output.scale
        return raw.astype(np.float32, copy=False)

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.set_input(batch)
        self.invoke()
        return self.scores()
