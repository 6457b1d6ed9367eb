"""From a JPEG file or a camera array to the model's input tensor.

Decoding uses Pillow's JPEG ``draft`` so a 12 MP frame is decoded at 1/2..1/8 scale straight
from the DCT, which is far cheaper than decoding at full size and resizing. Normalisation is
folded into the input quantisation where the model allows it, so quantised models are fed
pixels without a float pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from device.vision.runtime import TensorSpec

Box = tuple[int, int, int, int]  # left, top, right, bottom in pixels


class ImageError(ValueError):
    """An image that cannot be decoded; the message is one line."""


def load_image(path: Path, min_short_side: int) -> Image.Image:
    """Decode ``path`` as upright RGB with its short side at least ``min_short_side`` if it was.

    Greyscale, palette, RGBA and CMYK images are converted; EXIF orientation is applied.
    """
    try:
        with Image.open(path) as im:
            if im.format == "JPEG":
                w, h = im.size
                # draft() keeps both sides >= the request; ask in the image's own aspect.
                scale = max(1.0, min(w, h) / max(1, min_short_side))
                im.draft("RGB", (math.ceil(w / scale), math.ceil(h / scale)))
            im.load()
            upright = ImageOps.exif_transpose(im)
            return to_rgb(upright)
    except FileNotFoundError as exc:
        raise ImageError(f"{path}: no such file") from exc
    except IsADirectoryError as exc:
        raise ImageError(f"{path}: is a directory") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"{path}: not an image Pillow can read") from exc
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        reason = str(exc).strip() or type(exc).__name__
        if "truncated" in reason:
            reason = "truncated image data"
        raise ImageError(f"{path}: cannot decode ({reason})") from exc


def to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "RGB":
        return im
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        # Transparent areas become black rather than whatever colour the palette hid there.
        rgba = im.convert("RGBA")
        base = Image.new("RGB", rgba.size)
        base.paste(rgba, mask=rgba.getchannel("A"))
        return base
    return im.convert("RGB")


def array_to_image(array: np.ndarray) -> Image.Image:
    """An RGB (h, w, 3) or luma (h, w) uint8 array as an RGB image."""
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise ImageError(f"need a uint8 (h, w) or (h, w, 3) array, got {array.dtype} {array.shape}")
    if array.ndim == 3 and array.shape[2] != 3:
        raise ImageError(f"need 3 channels, got {array.shape[2]}")
    return to_rgb(Image.fromarray(array))


def full_box(size: tuple[int, int], mode: str, target: tuple[int, int]) -> Box:
    """The region of the frame the manifest's resize mode feeds to the model."""
    w, h = size
    if mode != "center_crop":
        return (0, 0, w, h)
    want = target[0] / target[1]
    if w / h > want:
        cw = round(h * want)
        left = (w - cw) // 2
        return (left, 0, left + cw, h)
    ch = round(w / want)
    top = (h - ch) // 2
    return (0, top, w, top + ch)


def tile_boxes(size: tuple[int, int], fraction: float, overlap: float, max_tiles: int) -> list[Box]:
    """Square tiles covering the whole frame, edges included, at most ``max_tiles``."""
    w, h = size
    side = max(1, round(min(w, h) * fraction))
    if max_tiles <= 0 or side >= max(w, h):
        return []
    step = max(1.0, side * (1.0 - overlap))

    def count(extent: int) -> int:
        return 1 if extent <= side else math.ceil((extent - side) / step) + 1

    nx, ny = count(w), count(h)
    while nx * ny > max_tiles and (nx > 1 or ny > 1):
        if nx >= ny and nx > 1:
            nx -= 1
        else:
            ny -= 1

    def starts(extent: int, n: int) -> list[int]:
        if n == 1:
            return [(extent - side) // 2 if extent > side else 0]
        return [round(i * (extent - side) / (n - 1)) for i in range(n)]

    return [
        (x, y, min(w, x + side), min(h, y + side)) for y in starts(h, ny) for x in starts(w, nx)
    ]


def region_box(size: tuple[int, int], bbox: Sequence[float], min_fraction: float = 0.3) -> Box:
    """A square crop around a normalised (x, y, w, h) region, with context, inside the frame."""
    w, h = size
    cx = (bbox[0] + bbox[2] / 2) * w
    cy = (bbox[1] + bbox[3] / 2) * h
    side = max(bbox[2] * w, bbox[3] * h) * 1.5
    side = min(min(w, h), max(side, min(w, h) * min_fraction))
    left = int(min(max(0.0, cx - side / 2), w - side))
    top = int(min(max(0.0, cy - side / 2), h - side))
    return (left, top, left + int(side), top + int(side))


def crop_resize(
    im: Image.Image, box: Box, target: tuple[int, int], pad: bool = False
) -> np.ndarray:
    """``box`` of ``im`` resized to ``target`` (w, h) as an (h, w, 3) uint8 array.

    ``reducing_gap`` lets Pillow reduce by an integer factor first (cheap) and resample only
    the last <= 1.5x.
    """
    # Shrinking: a box (area-average) filter is a proper anti-alias and the cheapest one.
    shrink = (box[2] - box[0]) >= target[0] and (box[3] - box[1]) >= target[1]
    method = Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR
    if not pad:
        return np.asarray(im.resize(target, method, box=box, reducing_gap=1.5))
    bw, bh = box[2] - box[0], box[3] - box[1]
    scale = min(target[0] / bw, target[1] / bh)
    inner = (max(1, round(bw * scale)), max(1, round(bh * scale)))
    canvas = Image.new("RGB", target)
    resized = im.resize(inner, method, box=box, reducing_gap=1.5)
    canvas.paste(resized, ((target[0] - inner[0]) // 2, (target[1] - inner[1]) // 2))
    return np.asarray(canvas)


@dataclass(frozen=True)
class InputEncoder:
    """Turns (h, w, 3) uint8 RGB into the model's input batch, per the manifest's mean/std."""

    spec: TensorSpec
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def pixel_offset(self) -> int | None:
        """When normalisation and quantisation cancel out up to an integer offset, that offset.

        Real value = (q - zp) * scale and the model wants (p - mean) / std; with
        scale == 1 / std the two agree for q = p + (zp - mean).
        """
        if not self.spec.quantized or len(set(self.mean)) != 1 or len(set(self.std)) != 1:
            return None
        if abs(self.spec.scale * self.std[0] - 1.0) > 1e-3:
            return None
        offset = self.spec.zero_point - self.mean[0]
        if abs(offset - round(offset)) > 0.01:
            return None
        return round(offset)

    def encode(self, rgb: np.ndarray) -> np.ndarray:
        batch = rgb[np.newaxis]
        dtype = self.spec.dtype
        offset = self.pixel_offset
        if offset == 0 and dtype == np.uint8:
            return np.ascontiguousarray(batch)
        if offset == -128 and dtype == np.int8:
            return (batch ^ np.uint8(0x80)).view(np.int8)
        if offset is None and dtype != np.float32 and not self.spec.quantized:
            # An integer input without quantisation parameters takes raw pixels.
            offset = 0 if dtype == np.uint8 else -128
        if offset is not None:
            info = np.iinfo(dtype)
            return np.clip(batch.astype(np.int16) + offset, info.min, info.max).astype(dtype)
        real = (batch.astype(np.float32) - np.asarray(self.mean, np.float32)) / np.asarray(
            self.std, np.float32
        )
        if dtype == np.float32:
            return real
        info = np.iinfo(dtype)
        q = np.round(real / self.spec.scale + self.spec.zero_point)
        return np.clip(q, info.min, info.max).astype(dtype)
