"""A camera that replays the JPEG files of a directory, in name order, looping.

The file's bytes are the "captured" image, unchanged. The analysis plane is decoded cheaply:
Pillow's JPEG ``draft`` lets libjpeg scale by 1/2, 1/4 or 1/8 while decoding, then a small
resize reaches ``lores_size``. A file that cannot be decoded still becomes a frame (with
``error`` set and no analysis plane), because the capture loop records such frames as failed
media rather than losing them.
"""

from __future__ import annotations

import io
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from device.hardware.camera import CameraError, CameraUnavailable, Frame

JPEG_SUFFIXES = {".jpg", ".jpeg"}

# EXIF orientations 5-8 store the picture turned by 90 degrees.
_TRANSPOSED = {5, 6, 7, 8}
_ORIENTATION_TAG = 0x0112


def list_jpegs(directory: Path) -> list[Path]:
    return sorted(
        p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in JPEG_SUFFIXES
    )


def decode_lores(data: bytes, lores_size: tuple[int, int]) -> tuple[np.ndarray, int, int]:
    """(luma at lores_size, upright width, upright height). Raises on undecodable data."""
    if not data:
        raise ValueError("empty file")
    with warnings.catch_warnings():
        # A decompression-bomb warning is about size, not corruption; draft() keeps it cheap.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            opened = Image.open(io.BytesIO(data))
        except UnidentifiedImageError as exc:
            raise ValueError("not an image format Pillow knows") from exc
        with opened as im:
            if im.format != "JPEG":
                raise ValueError(f"not a JPEG (found {im.format})")
            orientation = im.getexif().get(_ORIENTATION_TAG, 1)
            w, h = im.size
            if orientation in _TRANSPOSED:
                w, h = h, w
            target = lores_size if orientation not in _TRANSPOSED else lores_size[::-1]
            # Only grey output from colour JPEGs can be drafted; CMYK decodes at full colour.
            im.draft("L" if im.mode in ("RGB", "YCbCr", "L") else None, target)
            im.load()
            upright = ImageOps.exif_transpose(im)
            luma = upright.convert("L")
    small = luma.resize(lores_size, Image.Resampling.BILINEAR)
    return np.asarray(small, dtype=np.uint8).copy(), w, h


class ReplayCamera:
    """``start_delay_s`` (0 here) is waited on ``sleep`` at every start after a stop, as a real
    sensor's stream start costs: tests give it their fake clock's ``advance`` to see the
    first-frame latency of the low-power profiles in the captured times."""

    def __init__(self, directory: Path | str, lores_size: tuple[int, int]) -> None:
        self.directory = Path(directory)
        width, height = lores_size  # a list from TOML or a test works too
        self.lores_size = (int(width), int(height))
        self._files: list[Path] = []
        self._next = 0
        self._running = False
        self.start_delay_s = 0.0
        self.sleep: Callable[[float], None] = time.sleep

    def start(self) -> None:
        if self._running:
            return
        if self._files:
            # A restart after stop(): the files are listed; the replay goes on where it was.
            if self.start_delay_s > 0:
                self.sleep(self.start_delay_s)
            self._running = True
            return
        if not self.directory.is_dir():
            raise CameraUnavailable(f"replay camera: {self.directory} is not a directory")
        self._files = list_jpegs(self.directory)
        if not self._files:
            raise CameraUnavailable(
                f"replay camera: no .jpg/.jpeg files in {self.directory}; nothing to replay"
            )
        self._next = 0
        self._running = True

    def stop(self) -> None:
        self._running = False

    def capture_lores(self) -> np.ndarray | None:
        frame = self.capture()
        return frame.lores

    def capture(self) -> Frame:
        if not self._files:
            raise CameraError("replay camera: capture() before start()")
        if not self._running:
            raise CameraError("replay camera: capture() while the camera is stopped")
        path = self._files[self._next % len(self._files)]
        self._next += 1
        meta: dict[str, object] = {"source": path.name}
        try:
            data = path.read_bytes()
        except OSError as exc:
            # The file vanished or is unreadable: nothing at all to store, so this is a
            # camera failure rather than a bad frame.
            raise CameraError(f"replay camera: cannot read {path}: {exc}") from exc
        try:
            lores, width, height = decode_lores(data, self.lores_size)
        except Exception as exc:  # any decoder failure is a bad frame, not a crash
            return Frame(
                jpeg=data,
                lores=None,
                width=0,
                height=0,
                error=f"{path.name}: undecodable JPEG: {exc}",
                meta=meta,
            )
        return Frame(jpeg=data, lores=lores, width=width, height=height, meta=meta)

    def close(self) -> None:
        self._files = []
        self._running = False
