"""Motion evidence from the low-resolution luma frames of a burst.

Each frame is reduced to a coarse grid of cell means (grey levels). A cell's brightness is
illumination x reflectance, and what changes between two looks at an empty scene is mostly the
illumination: a cloud, auto-exposure, dusk, and at night the trap's own IR flash, whose power
and hot spot (vignetting) differ from frame to frame and from burst to burst. So before frames
are compared, each is brought to one light, the first frame's (``relit``):

    reference ~ exp(q(x, y)) * frame + o

``q`` is a quadratic surface over the frame fitted to the log ratio of the two frames (a gain
is its constant term; a Gaussian hot spot that moved, widened or dimmed changes the log
brightness by exactly such a surface), ``o`` an offset (black level, haze). Cells are weighed
by the inverse variance of their log ratio (a dim cell's ratio is mostly noise), and the fit is
robust: cells far off it (an animal is not light) are left out of a refit. Only what this
smooth re-lighting cannot explain counts as change. The global normalisation by median and
spread that this replaces is its special case (a constant ``q`` and ``o``).

A cell counts as changed when its difference exceeds ``motion_sigma`` times the noise of that
difference image and an absolute floor; a 3x3 opening removes isolated cells, and only the
largest connected blob counts. Evidence grows with its area on a log scale between two
configured areas. The background is learnt from timelapse and blank frames, each brought to the
background's light before it is averaged in.

Why these numbers: OUTLIER_SIGMAS = 3 is the usual robust-fit cut (0.3% of normal noise is cut
by mistake); six parameters describe a smooth surface, so fitting them on every FIT_STEP = 3rd
cell (350 cells) loses nothing and costs a ninth; the offset and the surface are fitted in turn
until the offset moves by less than OFFSET_SETTLED (half a grey level, below the JPEG's own
rounding), at most RELIGHT_ROUNDS times. None of these was fitted to a labelled set; they were
checked on synthetic IR bursts (device/hardware/scene.py ``plan_ir_scene``, tests/
test_vision_motion_ir.py) and the daytime synthetic scenes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

GRID_WIDTH = 64  # cells across; a 320x240 lores frame becomes 64x48 cells of 5x5 pixels
NOISE_FLOOR = 0.08  # of the frame's spread: below this, a difference is sensor noise or JPEG
RELIGHT_ROUNDS = 3  # at most this many alternating fits of gain surface and offset
OFFSET_SETTLED = 0.5  # grey levels: an offset change below half a level ends the rounds
FIT_STEP = 3  # the light surface is fitted on every 3rd cell each way (a 22x16 grid)
_RIDGE = np.eye(6, dtype=np.float32) * 1e-6  # keeps the 6x6 system solvable when it is flat
OUTLIER_SIGMAS = 3.0  # cells this far off the light estimate are something, not light


@dataclass(frozen=True)
class MotionResult:
    evidence: float  # 0..1
    area: float  # largest blob, share of the frame
    bbox: tuple[float, float, float, float] | None  # largest blob, normalised x, y, w, h
    comparisons: int  # how many differences were looked at (0: no evidence possible)


def reduce(luma: np.ndarray) -> np.ndarray:
    """Block means, about GRID_WIDTH cells across, in grey levels (float32)."""
    h, w = luma.shape
    f = max(1, w // GRID_WIDTH)
    gh, gw = h // f, w // f
    # Means stay fractional: rounding them to whole grey levels would turn a dark frame's
    # sensor noise into 1-level steps that pass for change. float32 sums of whole grey levels
    # are exact; summing the rows of a block first keeps the memory access contiguous.
    block_rows = luma[: gh * f, : gw * f].astype(np.float32).reshape(gh, f, gw * f).sum(axis=1)
    return block_rows.reshape(gh, gw, f).sum(axis=2) / np.float32(f * f)


def spread(cells: np.ndarray) -> float:
    """A frame's contrast in grey levels: its inter-quartile range as a normal s.d., + 2 so a
    flat (dark, night) frame does not amplify its noise."""
    lo, hi = _quantiles(cells, (0.25, 0.75))
    return (hi - lo) / 1.349 + 2.0


@lru_cache(maxsize=4)
def _basis(shape: tuple[int, int]) -> np.ndarray:
    """(cells, 6): 1, x, y, x^2, xy, y^2 over the grid, x and y in -1..1."""
    gh, gw = shape
    y, x = np.mgrid[0:gh, 0:gw].astype(np.float32)
    x = (2.0 * x / max(1, gw - 1) - 1.0).ravel()
    y = (2.0 * y / max(1, gh - 1) - 1.0).ravel()
    return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=1)


def _robust_quadratic(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The weighted least-squares quadratic surface through ``values``, robust to an animal.

    Fitted from two starts - every cell, and only the cells within OUTLIER_SIGMAS (weighted) of
    the median value - each refitted once without the cells more than OUTLIER_SIGMAS off the
    previous fit. The fit that explains more cells (judged at one noise level) wins: a large
    animal bends the first start, a strong change of light defeats the second. Six numbers
    describe a smooth surface, so every FIT_STEP-th cell each way is enough to fit them.
    """
    sample = (slice(None, None, FIT_STEP), slice(None, None, FIT_STEP))
    basis = _basis(values[sample].shape)
    target = values[sample].ravel()
    w = weights[sample].ravel()
    root = np.sqrt(w)

    def noise_of(off: np.ndarray) -> float:
        return _quantiles(off, (0.5,))[0] / 0.6745 + 1e-6

    def solve(keep: np.ndarray) -> np.ndarray:
        if keep.sum() < 4 * basis.shape[1]:
            keep = np.ones(target.size, bool)
        kw = w * keep
        gram = (basis * kw[:, None]).T @ basis + _RIDGE
        # In float64: OpenBLAS's threaded float32 path spends milliseconds on a 6x6 system
        # (measured: 2.6 ms against 10 us), more than the whole frame's other work.
        rhs = basis.T @ (kw * target)
        return np.linalg.solve(gram.astype(np.float64), rhs.astype(np.float64))

    offs, coefs = [], []
    start = np.abs(target - _quantiles(target, (0.5,))[0]) * root
    for keep in (np.ones(target.size, bool), start <= OUTLIER_SIGMAS * noise_of(start)):
        coef = solve(keep)
        off = np.abs(target - basis @ coef) * root  # noise units: weights are 1/variance
        coef = solve(off <= OUTLIER_SIGMAS * noise_of(off))
        offs.append(np.abs(target - basis @ coef) * root)
        coefs.append(coef)
    noise = min(noise_of(off) for off in offs)
    counts = [int((off <= OUTLIER_SIGMAS * noise).sum()) for off in offs]
    coef = coefs[int(np.argmax(counts))]
    return (_basis(values.shape) @ coef).reshape(values.shape).astype(np.float32)


def relit(frame: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``frame`` as it would look under ``reference``'s light:
    ``reference ~ exp(q(x, y)) * frame + o``.

    ``q`` is a quadratic surface over the frame, fitted to the log ratio of the two frames: a
    change of gain (auto-exposure, a cloud, the flash's power) is its constant term, and a hot
    spot of Gaussian fall-off that moved or widened changes the log brightness by exactly such
    a surface. ``o`` is an offset (the black level, haze). The two are fitted in turn until
    the offset settles; ``q`` is fitted robustly (``_robust_quadratic``): an animal is not
    light, so it does not bend the estimate. Of this fit and the global map of median and
    spread, the one that leaves the quieter residual (its lower quartile: where the scene is
    empty) is used.
    """
    # The global map of median and spread is the simplest light model; the surface must beat
    # it where the scene is empty. A large animal that moved can pull the surface into a
    # gradient that explains the animal and spoils the rest: then the simple model stays.
    lo_f, mid_f, hi_f = _quantiles(frame, (0.25, 0.5, 0.75))
    lo_r, mid_r, hi_r = _quantiles(reference, (0.25, 0.5, 0.75))
    simple = (frame - mid_f) * ((hi_r - lo_r + 1e-3) / (hi_f - lo_f + 1e-3)) + mid_r
    surface_fit = _surface_relit(frame, reference)
    quiet = [_quantiles(np.abs(c - reference), (0.25,))[0] for c in (simple, surface_fit)]
    return surface_fit if quiet[1] < quiet[0] else simple


def _surface_relit(frame: np.ndarray, reference: np.ndarray) -> np.ndarray:
    offset = 0.0
    predicted = frame
    for _ in range(RELIGHT_ROUNDS):
        shifted = np.maximum(reference - offset, 0.0) + 1.0
        log_ratio = np.log(shifted) - np.log(frame + 1.0)
        # A log ratio of dim cells is mostly noise: weigh each cell by its inverse variance
        # (for the sensor's read noise, which rules a dark frame: the square of brightness).
        weights = 1.0 / (1.0 / (shifted * shifted) + 1.0 / ((frame + 1.0) ** 2))
        surface = _robust_quadratic(log_ratio, weights)
        predicted = np.exp(surface) * (frame + 1.0) - 1.0 + offset
        change = _quantiles(reference - predicted, (0.5,))[0]
        offset += change
        if abs(change) < OFFSET_SETTLED:
            break
    return predicted


def _quantiles(values: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """Order statistics by one partial sort: cheaper than np.percentile's interpolation."""
    flat = values.ravel()
    ks = [min(flat.size - 1, int(q * (flat.size - 1))) for q in qs]
    part = np.partition(flat, ks)
    return [float(part[k]) for k in ks]


def _opened(mask: np.ndarray) -> np.ndarray:
    """Erode then dilate with a 3x3 cross: single changed cells (noise, insects) vanish."""
    h, w = mask.shape
    p = np.zeros((h + 2, w + 2), bool)  # a border of False, as np.pad gives, but cheaper
    p[1:-1, 1:-1] = mask
    eroded = p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    if not eroded.any():
        return eroded  # nothing survives erosion, so nothing to dilate
    q = np.zeros((h + 2, w + 2), bool)
    q[1:-1, 1:-1] = eroded
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


def changed_cells(a: np.ndarray, b: np.ndarray, sigmas: float, scale: float) -> np.ndarray:
    """Cells where two frames under one light (see ``relit``) differ; ``scale`` is the
    spread of the frame whose light they share."""
    diff = np.abs(b - a) / scale
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
        # Brought to the background's light first: an average of differently lit frames
        # (flash power, hot spot, dusk) would match none of them.
        self.background += self.alpha * (relit(cells, self.background) - self.background)
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
        # Everything is brought to one light, the first frame's, so each frame and the
        # background are re-lit once and every pair then differs only by what moved. (The
        # background is smooth and the first frame has the sensor's noise: re-lighting the
        # smooth one to the noisy one is the better-posed fit.)
        lit: dict[int, np.ndarray] = {}
        scale = 1.0
        if usable:
            reference = next(iter(usable.values()))
            lit = {i: c if c is reference else relit(c, reference) for i, c in usable.items()}
            if background is not None:
                background = relit(background, reference)
            scale = spread(reference)
        blobs: dict[tuple[int, int], tuple[int, tuple[int, int, int, int] | None]] = {}
        for a, cells_a in lit.items():  # each pair once: a difference is symmetric
            for b, cells_b in lit.items():
                if a < b:
                    blob = largest_blob(changed_cells(cells_a, cells_b, self.sigmas, scale))
                    blobs[a, b] = blobs[b, a] = blob
            if background is not None:
                changed = changed_cells(cells_a, background, self.sigmas, scale)
                blobs[a, -1] = largest_blob(changed)
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
