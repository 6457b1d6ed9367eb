"""Build the tiny real TFLite models the tests use (tests/data/models/).

Dev-time tool, run in the same build venv as build_default_pack.py (see its docstring for
the pinned packages):

    cd /work/main && /opt/camtrap-build/bin/python device/models/build_test_models.py

Every model maps a 32x32 RGB image to a softmax over 4 classes; their weights are random
(seeded), so only shapes, dtypes and quantisation are meaningful, never the predictions.
The ``tiny_embedding_*`` models also output their pooled features (an embedding) as a
second output, like the default pack. Writes README.md beside the models with what each is.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("PYTHONHASHSEED", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np

SEED = 4242
SIDE = 32
CLASSES = 4
REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "tests" / "data" / "models"
# device.contracts.hashing needs only the standard library (the build venv has no pydantic).
sys.path.insert(0, str(REPO))

from device.contracts.hashing import sha256_hex  # noqa: E402


def tiny_model():
    import keras
    from keras import layers

    keras.utils.set_random_seed(SEED)
    inp = keras.Input((SIDE, SIDE, 3), batch_size=1, name="image")
    x = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    x = layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(CLASSES)(x)
    return keras.Model(inp, layers.Softmax()(x))


def tiny_embedding_model(channels: int):
    """The same layers with the pooled features as a second output: ``channels`` values, so
    ``channels=CLASSES`` gives two outputs of one shape (told apart only by name)."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(SEED)
    inp = keras.Input((SIDE, SIDE, 3), batch_size=1, name="image")
    x = layers.Conv2D(channels, 3, strides=2, padding="same", activation="relu")(inp)
    x = layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    pooled = layers.GlobalAveragePooling2D(name="embedding")(x)
    scores = layers.Softmax(name="probabilities")(layers.Dense(CLASSES)(pooled))
    return keras.Model(inp, [scores, pooled])


def representative():
    # Pixels scaled like the default pack: (x - 127) / 128, full range pinned.
    rng = np.random.default_rng(SEED)
    for _ in range(32):
        x = (rng.integers(0, 256, (1, SIDE, SIDE, 3)).astype(np.float32) - 127) / 128
        x[0, 0, 0, 0], x[0, 0, 1, 0] = -127 / 128, 1.0
        yield [x]


def convert(model, io_type=None, int16_activations: bool = False) -> bytes:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if io_type is not None:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        ops = tf.lite.OpsSet
        conv.target_spec.supported_ops = [
            ops.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
            if int16_activations
            else ops.TFLITE_BUILTINS_INT8
        ]
        conv.inference_input_type = io_type
        conv.inference_output_type = io_type
    return conv.convert()


def describe(data: bytes) -> str:
    import tensorflow as tf

    interp = tf.lite.Interpreter(model_content=data)
    parts = []
    outputs = interp.get_output_details()
    tensors = [("in", interp.get_input_details()[0])]
    if len(outputs) == 1:
        tensors.append(("out", outputs[0]))
    else:  # name each output: the name is how a manifest tells two outputs of one shape apart
        tensors += [(f"out {det['name']!r}", det) for det in outputs]
    for label, det in tensors:
        scale, zero = det["quantization"]
        q = f"scale {scale:.8g}, zero point {zero}" if scale else "not quantised"
        parts.append(f"{label} {det['dtype'].__name__} {list(map(int, det['shape']))} ({q})")
    return "; ".join(parts)


def main() -> int:
    import tensorflow as tf

    out = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    model = tiny_model()
    builds = {
        "tiny_float32.tflite": ("float32 weights and activations", convert(model)),
        "tiny_uint8.tflite": ("full integer, uint8 input/output", convert(model, tf.uint8)),
        "tiny_int8.tflite": ("full integer, int8 input/output", convert(model, tf.int8)),
        "tiny_int16_input.tflite": (
            "16x8 quantised, int16 input/output: an input type the agent must refuse",
            convert(model, tf.int16, int16_activations=True),
        ),
    }
    # Names avoid "uint8", "int8" and "float32": tests pick the single-output models by them.
    embedding = tiny_embedding_model(8)
    same_size = tiny_embedding_model(CLASSES)
    builds |= {
        "tiny_embedding_q.tflite": (
            "full integer, uint8 input/outputs: scores and an 8-value embedding",
            convert(embedding, tf.uint8),
        ),
        "tiny_embedding_fp.tflite": (
            "float32: scores and an 8-value embedding",
            convert(embedding),
        ),
        "tiny_embedding_same_size.tflite": (
            "full integer, uint8: scores and a 4-value embedding, both [1, 4]",
            convert(same_size, tf.uint8),
        ),
    }
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, (what, data) in builds.items():
        (out / name).write_bytes(data)
        sha = sha256_hex(data)
        rows.append(f"| `{name}` | {len(data)} | {what} | {describe(data)} | `{sha[:16]}` |")
        print(name, len(data), describe(data))
    readme = "\n".join(
        [
            "# Tiny test models",
            "",
            "Real TFLite models for tests, built by `device/models/build_test_models.py` (seeded,",
            "random weights: only shapes, dtypes and quantisation mean anything). Each maps a",
            f"1x{SIDE}x{SIDE}x3 RGB image to a softmax over {CLASSES} classes; the",
            "`tiny_embedding_*` ones also output their pooled features. Quantised inputs",
            "follow the default pack: float input (x - 127) / 128, so uint8 input has scale",
            "1/128 and zero point 127 and int8 input scale 1/128 and zero point -1.",
            "",
            "| file | bytes | what | tensors | sha256 (prefix) |",
            "| --- | --- | --- | --- | --- |",
            *rows,
            "",
        ]
    )
    (out / "README.md").write_text(readme, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
