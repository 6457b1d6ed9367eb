"""The camera's info bar: the strip of date, time and temperature a trail camera burns into
the top or bottom of every frame.

The strip is not part of the scene. Its clock digits change from frame to frame (motion that
is not there) and its text is what a classifier sees in every frame alike, so the strip is cut
off before motion and before the crops. ``vision.info_bar`` says where it is:

- ``none``: no strip;
- ``band``: ``info_bar_top`` and ``info_bar_bottom`` (shares of the frame height) are cut;
- ``auto``: each event's frames are looked at with the rule below (for imported photos and
  the replay camera; a Pi camera burns no strip, and then nothing is found).

**The auto rule.** From each edge, walk rows inward while a row is *strip-like*: one flat
colour, i.e. at least ``FLAT_SHARE`` (half) of its pixels lie within ``FLAT_TOL`` (12 grey
levels) of its median, that median is printed-strip black or white (at most ``DARK``, 48, or
at least ``BRIGHT``, 200, of 255) and within ``FLAT_TOL`` of the edge row's (a strip has one
colour). A strip is found when that run of rows covers between ``MIN_SHARE`` (2%) and
``MAX_SHARE`` (15%) of the height, it ends at a hard edge (the median of the first row past
it jumps by more than ``FLAT_TOL`` from that of its last row) and it holds text: between
``TEXT_MIN`` (0.3%) and ``TEXT_MAX`` (40%) of its pixels differ from their row's median by
at least ``TEXT_STEP`` (64 grey levels).

Why these values: a printed strip is one flat colour (black on Reconyx, Bushnell and Browning
cameras, white on some others) under contrasting text, so most of each of its rows sits at one
level and a few pixels are far from it; a strip is one or two text lines high, a few percent
of the frame, and 2-15% leaves room either side. A dark night scene without text fails twice:
it has no text pixels, and its dark rows run on far past 15% of the height. A pale sky with
branches in it is flat and bright too, but it fades into the scene instead of ending at an
edge. A flat dark or white sky at an edge makes the run too long: then nothing is cut, which
costs at most some motion from the digits (never a lost frame).

The first version of this rule took only dark strips; the Snapshot Serengeti frames of the dev
set carry a white one, so the rule was widened to black or white strips; that let a pale sky
with branches (one dev frame) pass as a strip, which the hard-edge condition excludes. The
thresholds are the ones first written, not fitted to those frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

from device.vision.preprocess import Box

DARK, BRIGHT = 48, 200  # grey levels: a strip is printed black (<= DARK) or white (>= BRIGHT)
FLAT_TOL = 12  # grey levels around the row median that count as the strip's own colour
FLAT_SHARE = 0.5  # share of a strip row's pixels at its own colour (text is the rest)
MIN_SHARE, MAX_SHARE = 0.02, 0.15  # of the frame height
TEXT_STEP = 64  # grey levels from the row median that make a pixel text
TEXT_MIN, TEXT_MAX = 0.003, 0.4  # share of the strip's pixels that are text

InfoBarSource = Literal["none", "band", "auto"]


@dataclass(frozen=True)
class InfoBar:
    """Where the strip is, as shares of the frame height (0: no strip at that edge)."""

    top: float = 0.0
    bottom: float = 0.0
    source: InfoBarSource = "none"

    @property
    def present(self) -> bool:
        return self.top > 0 or self.bottom > 0

    def rows(self, height: int) -> tuple[int, int]:
        """First row and end row (exclusive) of the scene below/above the strip."""
        first = min(height - 1, round(self.top * height))
        end = max(first + 1, height - round(self.bottom * height))
        return first, end

    def scene_box(self, size: tuple[int, int]) -> Box:
        """The frame without the strip, in pixels (left, top, right, bottom)."""
        first, end = self.rows(size[1])
        return (0, first, size[0], end)

    def cut(self, luma: np.ndarray) -> np.ndarray:
        """A luma plane without the strip's rows (a view, no copy)."""
        if not self.present:
            return luma
        first, end = self.rows(luma.shape[0])
        return luma[first:end]

    def to_frame(self, bbox: Sequence[float]) -> tuple[float, float, float, float]:
        """A normalised (x, y, w, h) box of the scene as a box of the whole frame."""
        share = 1.0 - self.top - self.bottom
        x, y, w, h = (float(v) for v in bbox)
        return (x, self.top + y * share, w, h * share)

    def describe(self) -> dict[str, float | str]:
        return {"top": round(self.top, 4), "bottom": round(self.bottom, 4), "source": self.source}


NO_BAR = InfoBar()


def _row_medians(rows: np.ndarray) -> np.ndarray:
    middle = rows.shape[1] // 2
    return np.partition(rows, middle, axis=1)[:, middle].astype(np.int16)


def _strip_rows(rows: np.ndarray) -> int:
    """How many of ``rows`` (ordered from the edge inward) are strip-like, from the edge on."""
    medians = _row_medians(rows)
    near = np.abs(rows.astype(np.int16) - medians[:, None]) <= FLAT_TOL
    printed = (medians <= DARK) | (medians >= BRIGHT)
    one_colour = np.abs(medians - medians[0]) <= FLAT_TOL
    strip_like = printed & one_colour & (near.mean(axis=1) >= FLAT_SHARE)
    if strip_like.all():
        return len(rows)
    return int(np.argmin(strip_like))  # the first row that is not strip-like


def _look(height: int) -> int:
    """Rows looked at from an edge: one past the longest strip allowed."""
    return min(height, int(MAX_SHARE * height) + 2)


def _edge_share(band: np.ndarray, height: int) -> float:
    """The strip's share of ``height`` found in ``band`` (rows from the edge inward)."""
    if _strip_rows(band[:1]) == 0:
        return 0.0  # the edge row itself is no strip: most frames stop here, cheaply
    run = _strip_rows(band)
    if not MIN_SHARE * height <= run <= MAX_SHARE * height:
        return 0.0
    strip = band[:run].astype(np.int16)
    medians = _row_medians(band[:run])
    past = int(_row_medians(band[run : run + 1])[0])  # run < look here: MAX_SHARE * h < look
    if abs(past - int(medians[-1])) <= FLAT_TOL:
        return 0.0  # no hard edge: the scene fades on (a pale sky), not a printed strip
    text = float((np.abs(strip - medians[:, None]) >= TEXT_STEP).mean())
    return run / height if TEXT_MIN <= text <= TEXT_MAX else 0.0


def _usable(height: int, width: int) -> bool:
    return height >= 1 / MIN_SHARE and width >= 8


def detect(luma: np.ndarray) -> InfoBar:
    """The auto rule (module docstring) on one luma plane (h, w) uint8."""
    if luma.ndim != 2 or not _usable(*luma.shape):
        return NO_BAR
    height, look = luma.shape[0], _look(luma.shape[0])
    top = _edge_share(luma[:look], height)
    bottom = _edge_share(luma[::-1][:look], height)
    return InfoBar(top, bottom, "auto") if top or bottom else NO_BAR


def detect_in_image(image: Image.Image) -> InfoBar:
    """The auto rule on a decoded photo; only its two edge bands are converted to luma."""
    width, height = image.size
    if not _usable(height, width):
        return NO_BAR
    look = _look(height)

    def rows(top: int, bottom: int) -> np.ndarray:
        return np.asarray(image.crop((0, top, width, bottom)).convert("L"))

    # The edge row alone first: most photos have no strip, and one row is cheap to convert.
    top = _edge_share(rows(0, look), height) if _strip_rows(rows(0, 1)) else 0.0
    last = rows(height - 1, height)
    bottom = _edge_share(rows(height - look, height)[::-1], height) if _strip_rows(last) else 0.0
    return InfoBar(top, bottom, "auto") if top or bottom else NO_BAR


def configured(policy: InfoBarSource, top: float, bottom: float) -> InfoBar | None:
    """The strip a ``none``/``band`` setting fixes; None for ``auto`` (look at the frames)."""
    if policy == "auto":
        return None
    if policy == "band" and (top > 0 or bottom > 0):
        return InfoBar(top, bottom, "band")
    return NO_BAR


def union(bars: Sequence[InfoBar]) -> InfoBar:
    """One strip for all frames of an event (their lores planes must keep one shape): the
    widest found at each edge."""
    found = [b for b in bars if b.present]
    if not found:
        return NO_BAR
    return InfoBar(max(b.top for b in found), max(b.bottom for b in found), found[0].source)
