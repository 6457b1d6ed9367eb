"""EfficientNet-Lite0 written twice: once in Keras (to convert), once as plain torch ops.

Dev-time only (imported by build_default_pack.py inside the build venv). The torch version
is the reference the Keras rebuild is checked against, so both read the same state dict
keys but share no code beyond the block table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# EfficientNet-Lite keeps the EfficientNet-B0 stage table but drops squeeze-excite, uses
# ReLU6 and fixes stem (32) and head (1280) widths. Kernel sizes are also read back from
# the weights; strides are not stored there, hence this table.
# (repeats, kernel, first stride, expand ratio, out channels)
STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
BN_EPS = 1e-3
NUM_CLASSES = 1000
EMBEDDING_SIZE = 1280  # the head's width: the pooled features the classifier reads
INPUT_SIZE = 224


@dataclass(frozen=True)
class Block:
    index: int
    kernel: int
    stride: int
    expand: int
    c_in: int
    c_out: int

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.c_in == self.c_out


def blocks() -> list[Block]:
    out: list[Block] = []
    c_in = 32
    for repeats, kernel, stride, expand, c_out in STAGES:
        for r in range(repeats):
            out.append(Block(len(out), kernel, stride if r == 0 else 1, expand, c_in, c_out))
            c_in = c_out
    return out


State = dict[str, np.ndarray]


# ---------------------------------------------------------------- Keras rebuild


def build_keras(state: State):  # -> keras.Model
    import keras
    from keras import layers

    def conv(x, key: str, stride: int = 1):
        w = state[key]  # torch layout (out, in, kh, kw)
        conv_layer = layers.Conv2D(
            w.shape[0], w.shape[2], strides=stride, padding="same", use_bias=False
        )
        x = conv_layer(x)
        conv_layer.set_weights([w.transpose(2, 3, 1, 0)])
        return x

    def dwconv(x, key: str, stride: int):
        w = state[key]  # torch layout (channels, 1, kh, kw)
        dw = layers.DepthwiseConv2D(w.shape[2], strides=stride, padding="same", use_bias=False)
        x = dw(x)
        dw.set_weights([w.transpose(2, 3, 0, 1)])
        return x

    def bn(x, prefix: str):
        layer = layers.BatchNormalization(epsilon=BN_EPS)
        x = layer(x)
        layer.set_weights(
            [state[f"{prefix}.{n}"] for n in ("weight", "bias", "running_mean", "running_var")]
        )
        return x

    def relu6(x):
        return layers.ReLU(max_value=6.0)(x)

    inp = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), batch_size=1, name="image")
    x = relu6(bn(conv(inp, "_conv_stem.weight", 2), "_bn0"))
    for b in blocks():
        p = f"_blocks.{b.index}"
        y = x
        if b.expand != 1:
            y = relu6(bn(conv(y, f"{p}._expand_conv.weight"), f"{p}._bn0"))
        y = relu6(bn(dwconv(y, f"{p}._depthwise_conv.weight", b.stride), f"{p}._bn1"))
        y = bn(conv(y, f"{p}._project_conv.weight"), f"{p}._bn2")
        x = layers.Add()([x, y]) if b.residual else y
    x = relu6(bn(conv(x, "_conv_head.weight"), "_bn1"))
    # The pooled features are also an output (the embedding): what the classifier reads,
    # before it. Dropout sits between them only in training, so at inference this is exactly
    # the classifier's input.
    pooled = layers.GlobalAveragePooling2D(name="embedding")(x)
    fc = layers.Dense(NUM_CLASSES)
    logits = fc(pooled)
    fc.set_weights([state["_fc.weight"].T, state["_fc.bias"]])
    out = layers.Softmax(name="probabilities")(logits)
    return keras.Model(inp, [out, pooled], name="efficientnet_lite0")


# ---------------------------------------------------------------- torch reference


def _same_pad(x, kernel: int, stride: int):
    """TF 'SAME' padding: the extra pixel of an odd total goes bottom/right."""
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    pads = []
    for size in (w, h):
        out = math.ceil(size / stride)
        total = max((out - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


def torch_forward(state: State, images_nhwc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities and pooled features (the embedding) for float NHWC images
    already scaled to (x-127)/128."""
    import torch
    import torch.nn.functional as F

    t = {k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}

    def conv(x, key, stride=1, groups=1):
        w = t[key]
        return F.conv2d(_same_pad(x, w.shape[-1], stride), w, stride=stride, groups=groups)

    def bn(x, p):
        return F.batch_norm(
            x,
            t[f"{p}.running_mean"],
            t[f"{p}.running_var"],
            t[f"{p}.weight"],
            t[f"{p}.bias"],
            training=False,
            eps=BN_EPS,
        )

    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2)))
        x = F.relu6(bn(conv(x, "_conv_stem.weight", 2), "_bn0"))
        for b in blocks():
            p = f"_blocks.{b.index}"
            y = x
            if b.expand != 1:
                y = F.relu6(bn(conv(y, f"{p}._expand_conv.weight"), f"{p}._bn0"))
            dw_key = f"{p}._depthwise_conv.weight"
            y = F.relu6(bn(conv(y, dw_key, b.stride, groups=y.shape[1]), f"{p}._bn1"))
            y = bn(conv(y, f"{p}._project_conv.weight"), f"{p}._bn2")
            x = x + y if b.residual else y
        x = F.relu6(bn(conv(x, "_conv_head.weight"), "_bn1"))
        pooled = x.mean(dim=(2, 3))
        logits = F.linear(pooled, t["_fc.weight"], t["_fc.bias"])
        return torch.softmax(logits, dim=1).numpy(), pooled.numpy()
