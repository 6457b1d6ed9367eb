"""Motion evidence from the low-resolution luma frames of a burst.

Each frame is reduced to a coarse grid and normalised by its own median and spread, so a
global light change (a cloud, the IR lamp switching, auto-exposure) cancels out. Frames are
differenced against each other and against a background learnt from timelapse and blank
frames; a cell counts as changed when its difference stands out from the noise of that
difference image, and only connected blobs of changed cells count. Evidence grows with the
area of the largest blob, on a log scale between two configured areas.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

GRID_WIDTH = 64  # cells across; a 320x240 lores frame becomes 64x48 cells of 5x5 pixels
NOISE_FLOOR = 0.08  # in normalised units: below this, a difference is sensor noise or JPEG


@dataclass(frozen=True)
class MotionResult:
    evidence: float  # 0..1
    area: float  # largest blob, share of the frame
    bbox: tuple[float, float, float, float] | None  # largest blob, normalised x, y, w, h
    comparisons: int  # how many differences were looked at (0: no evidence possible)


def reduce(luma: np.ndarray) -> np.ndarray:
    """Block-mean to about GRID_WIDTH cells across, then normalise brightness and contrast."""
    h, w = luma.shape
    f = max(1, w // GRID_WIDTH)
    gh, gw = h // f, w // f
    # Means stay fractional: rounding them to whole grey levels would turn a dark frame's
    # sensor noise into 1-level steps that pass for change. Two uint16 sums are cheap.
    acc = np.uint16 if f <= 16 else np.uint32  # 16 x 16 x 255 still fits 16 bits
    rows = luma[: gh * f, : gw * f].reshape(gh * f, gw, f).sum(axis=2, dtype=acc)
    cells = rows.reshape(gh, f, gw).sum(axis=1, dtype=acc).astype(np.float32) / (f * f)
    lo, mid, hi = _quantiles(cells, (0.25, 0.5, 0.75))
    spread = (hi - lo) / 1.349 + 2.0  # +2: a flat (dark, night) frame must not amplify noise
    return (cells - mid) / spread


def _quantiles(values: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """Order statistics by one partial sort: cheaper than np.percentile's interpolation."""
    flat = values.ravel()
    ks = [min(flat.size - 1, int(q * (flat.size - 1))) for q in qs]
    part = np.partition(flat, ks)
    return [float(part[k]) for k in ks]


def _opened(mask: np.ndarray) -> np.ndarray:
    """Erode then dilate with a 3x3 cross: single changed cells (noise, insects) vanish."""
    p = np.pad(mask, 1)
    eroded = p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    q = np.pad(eroded, 1)
    return q[1:-1, 1:-1] | q[:-2, 1:-1] | q[2:, 1:-1] | q[1:-1, :-2] | q[1:-1, 2:]


def largest_blob(mask: np.ndarray) -> tuple[int, tuple[int, int, int, int] | None]:
    """Cell count and (row0, col0, row1, col1) of the largest 4-connected blob.

    Works on horizontal runs of set cells (union-find over runs), so the Python loop is over
    runs, not cells: a few dozen for a real scene.
    """
    if not mask.any():
        return 0, None
    padded = np.zeros((mask.shape[0], mask.shape[1] + 2), np.int8)
    padded[:, 1:-1] = mask
    edges = np.diff(padded, axis=1)
    starts_r, starts_c = np.nonzero(edges == 1)
    _, ends_c = np.nonzero(edges == -1)  # same row-major order as the starts
    runs = list(zip(starts_r.tolist(), starts_c.tolist(), ends_c.tolist(), strict=True))
    parent = list(range(len(runs)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    by_row: dict[int, list[int]] = {}
    for i, (r, _, _) in enumerate(runs):
        by_row.setdefault(r, []).append(i)
    for i, (r, c0, c1) in enumerate(runs):
        for j in by_row.get(r - 1, ()):
            _, d0, d1 = runs[j]
            if d0 < c1 and c0 < d1:  # columns overlap: 4-connected
                parent[find(j)] = find(i)
    sizes: dict[int, int] = {}
    boxes: dict[int, list[int]] = {}
    for i, (r, c0, c1) in enumerate(runs):
        root = find(i)
        sizes[root] = sizes.get(root, 0) + (c1 - c0)
        box = boxes.setdefault(root, [r, c0, r + 1, c1])
        box[0], box[1] = min(box[0], r), min(box[1], c0)
        box[2], box[3] = max(box[2], r + 1), max(box[3], c1)
    best = max(sizes, key=lambda k: sizes[k])
    b = boxes[best]
    return sizes[best], (b[0], b[1], b[2], b[3])


def changed_cells(a: np.ndarray, b: np.ndarray, sigmas: float) -> np.ndarray:
    diff = np.abs(a - b)
    # The 25th percentile of |noise| is 0.32 sigma; using it (not the median) keeps the noise
    # estimate honest when an animal fills half the frame.
    sigma = _quantiles(diff, (0.25,))[0] / 0.319
    return _opened(diff > max(sigmas * sigma, NOISE_FLOOR))


class MotionModel:
    def __init__(self, sigmas: float, min_area: float, full_area: float, alpha: float) -> None:
        self.sigmas = sigmas
        self.min_area = min_area
        self.full_area = max(full_area, min_area * 1.0001)
        self.alpha = alpha
        self.background: np.ndarray | None = None
        self.background_frames = 0

    def learn(self, luma: np.ndarray) -> None:
        cells = reduce(luma)
        if self.background is None or self.background.shape != cells.shape:
            self.background, self.background_frames = cells, 1
            return
        self.background += self.alpha * (cells - self.background)
        self.background_frames += 1

    def _evidence(self, area: float) -> float:
        if area < self.min_area:
            return 0.0
        span = math.log(self.full_area) - math.log(self.min_area)
        return float(min(1.0, (math.log(area) - math.log(self.min_area)) / span))

    def burst(self, frames: Sequence[np.ndarray | None]) -> list[MotionResult]:
        """One result per frame (None frames get no evidence)."""
        reduced = [reduce(f) if f is not None and f.ndim == 2 else None for f in frames]
        shapes = {r.shape for r in reduced if r is not None}
        shape = max(shapes, key=lambda s: s[0] * s[1]) if shapes else None
        # Frame index -> its cells, for the frames of the common shape only.
        usable = {i: r for i, r in enumerate(reduced) if r is not None and r.shape == shape}
        background = self.background
        if background is not None and background.shape != shape:
            background = None
        blobs: dict[tuple[int, int], tuple[int, tuple[int, int, int, int] | None]] = {}
        for a, cells_a in usable.items():  # each pair once: a difference is symmetric
            for b, cells_b in usable.items():
                if a < b:
                    blob = largest_blob(changed_cells(cells_a, cells_b, self.sigmas))
                    blobs[a, b] = blobs[b, a] = blob
            if background is not None:
                blobs[a, -1] = largest_blob(changed_cells(cells_a, background, self.sigmas))
        results = []
        for i in range(len(reduced)):
            cells = usable.get(i)
            if cells is None:
                results.append(MotionResult(0.0, 0.0, None, 0))
                continue
            others = [blob for key, blob in blobs.items() if key[0] == i]
            best_area, best_box = 0, None
            for area, box in others:
                if area > best_area:
                    best_area, best_box = area, box
            total = cells.size
            share = best_area / total
            bbox = None
            if best_box is not None:
                gh, gw = cells.shape
                r0, c0, r1, c1 = best_box
                bbox = (c0 / gw, r0 / gh, (c1 - c0) / gw, (r1 - r0) / gh)
            evidence = self._evidence(share) if others else 0.0
            results.append(MotionResult(evidence, share, bbox, len(others)))
        return results
