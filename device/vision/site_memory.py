"""The site memory: what this camera's empty scene looks like, as the model sees it.

Per deployment the agent remembers the embeddings (the model's pooled feature vectors) of
frames known to show the empty scene, at every crop position (the full frame and each tile),
so that tile i of a new frame is compared with tile i of the remembered ones. A frame far from
everything remembered is *novel*: something may be there that the site does not usually show.
Novelty is evidence of presence only: the engine multiplies it into the noisy-OR
(``blank_score = (1 - e_cls) * (1 - w * e_motion) * (1 - e_novelty)``), so it can keep a frame,
never remove one.

**What is remembered.** Frames of timelapse captures with nothing named in them; frames of an
event whose every frame scores at least ``CONFIDENT_BLANK`` (0.95, the blank threshold
Wildlife Insights uses for its blank class), whatever blank threshold is in force, so what is
remembered does not move with a calibration; and human-confirmed blanks (``remember`` with
reason "confirmed"; the agent has no path yet that brings a reviewer's verdict back to the
trap). At most ``vision.site_memory_size`` frames; when full, the oldest goes (the memory
follows the season).

**The novelty rule** (a conformal test, no number fitted to a labelled set):

- at each position, a frame's distance to the memory is its mean distance to its
  ``NEIGHBOURS`` (3) nearest remembered frames;
- the memory's own spread is the same distance for each remembered frame to the others,
  leaving out the frames of its own event (a burst's frames are near-copies of each other);
- if the new frame shows the empty scene as the remembered ones do, its distance is one more
  draw from that spread, so ``p = (1 + #{spread >= distance}) / (n + 1)`` is a valid p-value;
- a frame's p-value is the smallest over its ``m`` positions times ``m`` (Bonferroni, as the
  engine corrects its tiles), and ``e_novelty = max(0, 1 - p / ALPHA)`` with ``ALPHA`` = 0.05:
  at most 5% of empty frames get any novelty evidence, and evidence near 1 needs a frame
  farther from the empty scene than nearly every remembered frame is from the others.
- a memory too small to judge gives zero: with ``n`` judged frames the smallest p-value is
  ``m / (n + 1)``, so evidence needs ``n + 1 > m / ALPHA`` (20 frames for the full frame
  alone, 180 with 8 tiles).

**Memory cost.** Each embedding is L2-normalised (cosine geometry) and projected to
``PROJECTED_DIMS`` (64) dimensions by a fixed Gaussian matrix drawn from ``PROJECTION_SEED``
(distances are kept to within a few percent, Johnson-Lindenstrauss), then stored as int8 with
one scale per vector: 2,000 frames x 9 positions x 64 bytes = 1.2 MB, plus 0.6 MB of
neighbour lists, instead of 92 MB as float32 at 1280 values.

**Persistence.** ``<data_dir>/site_memory.npz``, written atomically (device.contracts.durable)
when at least ``SAVE_SHARE`` (5%) of the capacity was added since the last save, or when
additions are ``SAVE_MAX_AGE_S`` (6 h) old, and when the agent stops: SD cards die from
writes, and losing the last few hours of learning costs only a little novelty evidence. A
file that cannot be read is logged in one line and the memory starts empty. The memory starts
over when the deployment or location changes (relocation), when the model's embedding space
or the crop layout changes, and on the remote command ``reset-site-memory``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import threading
import time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from device.contracts.durable import atomic_write

if TYPE_CHECKING:
    from device.config import Settings

log = logging.getLogger("camtrap.vision")

PROJECTED_DIMS = 64
PROJECTION_SEED = 14  # fixed for ever: a memory's vectors are only comparable in one projection
NEIGHBOURS = 3
ALPHA = 0.05  # family-wise share of empty frames that may get any novelty evidence
CONFIDENT_BLANK = 0.95  # Wildlife Insights' blank threshold for its blank class
SAVE_SHARE = 0.05
SAVE_MAX_AGE_S = 6 * 3600.0
FILE_NAME = "site_memory.npz"
FORMAT = "camtrap-site-memory/1"
_INF = np.float32(np.inf)


@dataclass(frozen=True)
class FrameEmbedding:
    """One frame as the site memory sees it: a projected embedding per crop position."""

    space: str  # the embedding space: the model file that made it and its size (engine.py)
    layout: str  # the crop positions, e.g. "full+tiles4x2"
    vectors: np.ndarray  # (positions, dims) float32, projected
    blank_score: float = 1.0  # the frame's own blank score, once the engine has it


@dataclass(frozen=True)
class Novelty:
    evidence: float  # 0..1, evidence of presence
    p_value: float  # family-wise over the positions (1: nothing unusual, or not judged)
    position: int  # the most novel position
    remembered: int  # frames the memory holds

    def describe(self, names: list[str] | None = None) -> dict[str, Any]:
        where = names[self.position] if names and self.position < len(names) else self.position
        return {
            "evidence": round(self.evidence, 4),
            "p": round(self.p_value, 4),
            "position": where,
            "remembered": self.remembered,
        }


NOT_JUDGED = Novelty(0.0, 1.0, 0, 0)


@lru_cache(maxsize=4)
def _projection(size: int) -> np.ndarray:
    """(size, PROJECTED_DIMS) Gaussian matrix with unit expected column norm, seeded."""
    rng = np.random.default_rng([PROJECTION_SEED, size])
    matrix = rng.standard_normal((size, PROJECTED_DIMS), dtype=np.float32)
    return matrix / np.float32(np.sqrt(PROJECTED_DIMS))


def project(raw: np.ndarray) -> np.ndarray:
    """Embeddings (positions, size) as L2-normalised projected vectors (positions, dims).

    An embedding no longer than PROJECTED_DIMS is only normalised.
    """
    rows = np.asarray(raw, np.float32).reshape(len(raw), -1)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    unit = rows / np.maximum(norms, np.float32(1e-12))
    if unit.shape[1] <= PROJECTED_DIMS:
        return unit
    return unit @ _projection(unit.shape[1])


def group_of(event_id: str) -> int:
    """A stable 63-bit number for an event id (the same after a restart)."""
    digest = hashlib.blake2b(event_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def site_of(settings: Settings) -> str:
    """Where the trap is: a change of any of these is a relocation."""
    loc, dev = settings.location, settings.device
    return json.dumps(
        [dev.deployment_id, loc.latitude, loc.longitude, loc.country, loc.admin1],
        separators=(",", ":"),
    )


class MemoryFileError(ValueError):
    """The memory file cannot be used; one line."""


class SiteMemory:
    """The bounded memory of one site's empty scene. Thread-safe: the vision worker feeds and
    asks it, the OTA thread may reset it."""

    def __init__(
        self,
        capacity: int,
        site: str = "",
        path: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``path`` None: held in RAM only (``camtrap eval``, ``classify``)."""
        self.capacity = max(0, int(capacity))
        self.site = site
        self.path = path
        self._clock = clock
        self._lock = threading.RLock()
        self._save_failed = False
        self._clear()
        self._saved_at = clock()

    # ---------------------------------------------------------------- state

    def _clear(self) -> None:
        self.space: str | None = None
        self.layout: str | None = None
        self._filled = 0  # slots in use: 0..filled-1 (a ring once full)
        self._next = 0  # the slot the next frame goes into (the oldest, once full)
        self._vecs = np.zeros((0, 0, 0), np.int8)  # (positions, capacity, dims)
        self._scale = np.zeros((0, 0), np.float32)  # (positions, capacity)
        self._sq = np.zeros((0, 0), np.float32)  # squared norms of the stored vectors
        self._group = np.zeros(0, np.int64)  # (capacity,)
        self._nn_d = np.zeros((0, 0, NEIGHBOURS), np.float32)  # neighbour distances
        self._nn_i = np.zeros((0, 0, NEIGHBOURS), np.int32)  # neighbour slots (-1: none)
        self._sorted_spread: list[np.ndarray] | None = None  # per position, judged frames only
        self._unsaved = 0

    def _allocate(self, positions: int, dims: int) -> None:
        cap = self.capacity
        self._vecs = np.zeros((positions, cap, dims), np.int8)
        self._scale = np.zeros((positions, cap), np.float32)
        self._sq = np.zeros((positions, cap), np.float32)
        self._group = np.zeros(cap, np.int64)
        self._nn_d = np.full((positions, cap, NEIGHBOURS), _INF, np.float32)
        self._nn_i = np.full((positions, cap, NEIGHBOURS), -1, np.int32)

    def __len__(self) -> int:
        with self._lock:
            return self._filled

    @property
    def dirty(self) -> bool:
        with self._lock:
            return self._unsaved > 0

    # ---------------------------------------------------------------- geometry

    def _stored(self, position: int, slots: slice | np.ndarray) -> np.ndarray:
        """The stored vectors of ``slots`` at ``position`` as float32 (dequantised)."""
        q = self._vecs[position, slots].astype(np.float32)
        return q * self._scale[position, slots][:, None]

    def _distances(self, vectors: np.ndarray) -> np.ndarray:
        """Euclidean distances (positions, filled) from one frame to every remembered one."""
        n = self._filled
        stored = self._vecs[:, :n].astype(np.float32)  # (m, n, d)
        dots = np.matmul(stored, vectors[:, :, None])[..., 0] * self._scale[:, :n]
        own = np.einsum("md,md->m", vectors, vectors)[:, None]
        squared = own + self._sq[:, :n] - 2.0 * dots
        return np.sqrt(np.maximum(squared, 0.0, out=squared), out=squared)

    def _spread(self) -> np.ndarray:
        """(positions, filled) each remembered frame's mean distance to its neighbours of
        other events; NaN where it has fewer than NEIGHBOURS of them yet."""
        nn = self._nn_d[:, : self._filled]
        mean = nn.mean(axis=2)
        mean[~np.isfinite(mean)] = np.nan
        return mean

    # ---------------------------------------------------------------- asking

    def novelty(self, frame: FrameEmbedding) -> Novelty:
        """How unusual ``frame`` is for this site (module docstring); never raises."""
        with self._lock:
            if (
                self._filled == 0
                or frame.space != self.space
                or frame.layout != self.layout
                or frame.vectors.shape[0] != self._vecs.shape[0]
                or frame.vectors.shape[1] != self._vecs.shape[2]
            ):
                return Novelty(0.0, 1.0, 0, self._filled)
            distances = self._distances(np.asarray(frame.vectors, np.float32))
            k = min(NEIGHBOURS, distances.shape[1])
            near = np.partition(distances, k - 1, axis=1)[:, :k].mean(axis=1)  # (m,)
            if self._sorted_spread is None:  # the spread changes only when the memory does
                spread = self._spread()
                self._sorted_spread = [np.sort(row[~np.isnan(row)]) for row in spread]
            judged = np.array([len(row) for row in self._sorted_spread], np.float64)
            farther = np.array(
                [
                    len(row) - np.searchsorted(row, d, "left")
                    for row, d in zip(self._sorted_spread, near, strict=True)
                ]
            )
            p = (1.0 + farther) / (judged + 1.0)
            positions = len(p)
            best = int(np.argmin(p))
            family = min(1.0, float(p[best]) * positions)
            evidence = max(0.0, 1.0 - family / ALPHA)
            return Novelty(evidence, family, best, self._filled)

    # ---------------------------------------------------------------- learning

    def learn_from_event(
        self,
        event_id: str,
        frames: Mapping[str, FrameEmbedding],
        *,
        timelapse: bool,
        blank_event: bool,
        named: bool,
    ) -> int:
        """Remember the frames of one classified event that show the empty scene (module
        docstring); returns how many were remembered."""
        if self.capacity == 0:
            return 0
        added = 0
        for frame in frames.values():
            if timelapse and not named:
                added += self.remember(frame, event_id, "timelapse")
            elif blank_event and frame.blank_score >= CONFIDENT_BLANK:
                added += self.remember(frame, event_id, "confident blank")
        return added

    def remember(self, frame: FrameEmbedding, event_id: str, reason: str = "confirmed") -> bool:
        """Add one frame known to show the empty scene; False if the memory is off."""
        vectors = np.asarray(frame.vectors, np.float32)
        if self.capacity == 0 or vectors.ndim != 2 or not vectors.size:
            return False
        with self._lock:
            if frame.space != self.space or frame.layout != self.layout:
                if self._filled:
                    log.info(
                        "site memory starts over: %s changed (%s -> %s)",
                        "the model" if frame.space != self.space else "the crop layout",
                        self.space if frame.space != self.space else self.layout,
                        frame.space if frame.space != self.space else frame.layout,
                    )
                self._clear()
                self.space, self.layout = frame.space, frame.layout
                self._allocate(*vectors.shape)
            self._insert(vectors, group_of(event_id))
            self._unsaved += 1
            log.debug("site memory: remembered a %s frame (%d held)", reason, self._filled)
            return True

    def _insert(self, vectors: np.ndarray, group: int) -> None:
        self._sorted_spread = None
        slot = self._next
        stale = np.zeros((0, 0), bool)
        if self._filled == self.capacity:
            # The oldest goes. Frames that had it as a neighbour look for a new one below.
            stale = (self._nn_i[:, : self._filled] == slot).any(axis=2)
            self._group[slot] = -1  # never matches a real group while it is rewritten
        else:
            self._filled += 1
        self._next = (slot + 1) % self.capacity
        peak = np.abs(vectors).max(axis=1)
        scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
        self._vecs[:, slot] = np.round(vectors / scale[:, None]).astype(np.int8)
        self._scale[:, slot] = scale
        stored = self._stored_all(slot)
        self._sq[:, slot] = np.einsum("md,md->m", stored, stored)
        self._group[slot] = group
        distances = self._distances(stored)  # (m, filled)
        distances[:, self._group[: self._filled] == group] = _INF  # its own event, itself
        self._offer(distances, slot)
        self._own_neighbours(slot, distances)
        if stale.size:
            stale[:, slot] = False
            for position in range(stale.shape[0]):
                rows = np.nonzero(stale[position])[0]
                if rows.size:
                    self._recompute(position, rows)

    def _stored_all(self, slot: int) -> np.ndarray:
        return self._vecs[:, slot].astype(np.float32) * self._scale[:, slot][:, None]

    def _offer(self, distances: np.ndarray, slot: int) -> None:
        """The new frame becomes a neighbour of every frame it is nearer to than their
        farthest neighbour so far."""
        nn_d, nn_i = self._nn_d[:, : self._filled], self._nn_i[:, : self._filled]
        worst = nn_d.argmax(axis=2)[..., None]  # (m, n, 1)
        worst_d = np.take_along_axis(nn_d, worst, axis=2)[..., 0]
        closer = distances < worst_d
        if not closer.any():
            return
        np.put_along_axis(nn_d, worst, np.where(closer, distances, worst_d)[..., None], axis=2)
        worst_i = np.take_along_axis(nn_i, worst, axis=2)[..., 0]
        np.put_along_axis(nn_i, worst, np.where(closer, slot, worst_i)[..., None], axis=2)

    def _own_neighbours(self, slot: int, distances: np.ndarray) -> None:
        n = distances.shape[1]
        k = min(NEIGHBOURS, n)
        idx = np.argpartition(distances, k - 1, axis=1)[:, :k]
        near = np.take_along_axis(distances, idx, axis=1)
        self._nn_d[:, slot] = _INF
        self._nn_i[:, slot] = -1
        self._nn_d[:, slot, :k] = near
        self._nn_i[:, slot, :k] = np.where(np.isfinite(near), idx, -1)

    def _recompute(self, position: int, rows: np.ndarray) -> None:
        """Neighbour lists of ``rows`` at ``position`` from scratch."""
        n = self._filled
        mine = self._stored(position, rows)  # (r, d)
        theirs = self._stored(position, slice(0, n))  # (n, d)
        squared = (self._sq[position, rows][:, None] + self._sq[position, :n][None, :]) - 2.0 * (
            mine @ theirs.T
        )
        distances = np.sqrt(np.maximum(squared, 0.0))
        same = self._group[rows][:, None] == self._group[:n][None, :]
        distances[same] = _INF
        k = min(NEIGHBOURS, n)
        idx = np.argpartition(distances, k - 1, axis=1)[:, :k]
        near = np.take_along_axis(distances, idx, axis=1)
        self._nn_d[position, rows] = _INF
        self._nn_i[position, rows] = -1
        self._nn_d[position, rows, :k] = near
        self._nn_i[position, rows, :k] = np.where(np.isfinite(near), idx, -1)

    # ---------------------------------------------------------------- resetting

    def reset(self, reason: str) -> int:
        """Forget everything (relocation, the remote command); saved at once so a restart
        does not bring the old scene back. Returns how many frames were forgotten."""
        with self._lock:
            forgotten = self._filled
            self._clear()
            log.info("site memory reset (%s): %d frames forgotten", reason, forgotten)
            if self.path is not None:
                self._unsaved = 1  # an empty memory is saved too
                self.save()
            return forgotten

    def move_to(self, site: str) -> None:
        """The trap's site now: a different one (relocation) starts the memory over."""
        with self._lock:
            if site == self.site:
                return
            self.site = site
            if self._filled:
                self.reset("relocated: deployment or location changed")

    # ---------------------------------------------------------------- persistence

    def maybe_save(self) -> bool:
        """Save when enough was added or additions are old enough (module docstring)."""
        with self._lock:
            if self.path is None or self._unsaved == 0:
                return False
            enough = self._unsaved >= max(1, round(SAVE_SHARE * self.capacity))
            old = self._clock() - self._saved_at >= SAVE_MAX_AGE_S
            return self.save() if enough or old else False

    def save(self) -> bool:
        """Write the memory file now (atomically); False (logged once) if it cannot."""
        with self._lock:
            if self.path is None:
                return False
            try:
                atomic_write(self.path, self._encode())
            except OSError as exc:
                if not self._save_failed:
                    log.warning("site memory not saved to %s: %s", self.path, exc)
                self._save_failed = True
                return False
            self._save_failed = False
            self._unsaved = 0
            self._saved_at = self._clock()
            return True

    def _encode(self) -> bytes:
        n = self._filled
        meta = {
            "format": FORMAT,
            "site": self.site,
            "space": self.space,
            "layout": self.layout,
            "dims": int(self._vecs.shape[2]) if self._vecs.ndim == 3 else 0,
            "neighbours": NEIGHBOURS,
            "seed": PROJECTION_SEED,
            "capacity": self.capacity,
            "filled": n,
            "next": self._next,
        }
        buffer = io.BytesIO()
        np.savez(
            buffer,
            meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
            vecs=self._vecs[:, :n],
            scale=self._scale[:, :n],
            group=self._group[:n],
            nn_d=self._nn_d[:, :n],
            nn_i=self._nn_i[:, :n],
        )
        return buffer.getvalue()

    def load(self) -> None:
        """Read the memory file if there is one. A file of another site (relocation) starts
        the memory over; one that cannot be read is logged in one line and ignored."""
        if self.path is None:
            return
        with self._lock:
            try:
                data = self.path.read_bytes()
            except FileNotFoundError:
                return
            except OSError as exc:
                log.warning("site memory %s unreadable (%s); starting empty", self.path, exc)
                return
            try:
                meta, arrays = _decode(data)
            except MemoryFileError as exc:
                log.warning("site memory %s unreadable (%s); starting empty", self.path, exc)
                self._clear()
                return
            if meta["site"] != self.site:
                log.info("site memory reset (relocated: deployment or location changed)")
                self._clear()
                self._unsaved = 1
                self.save()
                return
            try:
                self._restore(meta, arrays)
            except MemoryFileError as exc:
                log.warning("site memory %s unreadable (%s); starting empty", self.path, exc)
                self._clear()

    def _restore(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        n, vecs = int(meta["filled"]), arrays["vecs"]
        if meta["neighbours"] != NEIGHBOURS or meta["seed"] != PROJECTION_SEED:
            raise MemoryFileError("made with another novelty rule")
        if n == 0 or meta["space"] is None:
            self._clear()
            return
        positions, dims = vecs.shape[0], vecs.shape[2]
        shapes = {
            "vecs": ((positions, n, dims), np.int8),
            "scale": ((positions, n), np.float32),
            "group": ((n,), np.int64),
            "nn_d": ((positions, n, NEIGHBOURS), np.float32),
            "nn_i": ((positions, n, NEIGHBOURS), np.int32),
        }
        for name, (shape, dtype) in shapes.items():
            if arrays[name].shape != shape or arrays[name].dtype != dtype:
                raise MemoryFileError(f"{name} is {arrays[name].dtype}{arrays[name].shape}")
        if dims != meta["dims"] or not 0 <= int(meta["next"]) < max(1, int(meta["capacity"])):
            raise MemoryFileError("inconsistent header")
        self._clear()
        self.space, self.layout = str(meta["space"]), str(meta["layout"])
        if self.capacity == 0:
            return
        self._allocate(positions, dims)
        if meta["capacity"] == self.capacity and n <= self.capacity:
            self._vecs[:, :n], self._scale[:, :n] = vecs, arrays["scale"]
            self._group[:n] = arrays["group"]
            self._nn_d[:, :n], self._nn_i[:, :n] = arrays["nn_d"], arrays["nn_i"]
            if (self._nn_i[:, :n] >= n).any():
                raise MemoryFileError("a neighbour outside the memory")
            self._filled, self._next = n, int(meta["next"]) % self.capacity
            stored = self._vecs[:, :n].astype(np.float32) * self._scale[:, :n, None]
            self._sq[:, :n] = np.einsum("mnd,mnd->mn", stored, stored)
            return
        # vision.site_memory_size changed: the newest frames again, oldest first.
        order = list(range(n))
        if n == meta["capacity"]:
            start = int(meta["next"])
            order = order[start:] + order[:start]
        for i in order[-self.capacity :]:
            vectors = vecs[:, i].astype(np.float32) * arrays["scale"][:, i][:, None]
            self._insert(vectors, int(arrays["group"][i]))


def _decode(data: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    names = ("meta", "vecs", "scale", "group", "nn_d", "nn_i")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in names}
        meta = json.loads(arrays.pop("meta").tobytes().decode())
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise MemoryFileError(str(exc).strip() or type(exc).__name__) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise MemoryFileError(f"not a {FORMAT} file")
    needed = ("site", "space", "layout", "dims", "neighbours", "seed", "capacity", "filled")
    missing = [key for key in (*needed, "next") if key not in meta]
    if missing:
        raise MemoryFileError(f"header lacks {', '.join(missing)}")
    return meta, arrays
