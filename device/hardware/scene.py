"""Deterministic synthetic camera-trap scenes, for development and evaluation without a camera.

A scene is what one PIR trigger sees: a background of ground and vegetation (tiled from small
CC0 textures in ``scenes/``) and either an animal crossing the frame over the burst or a false
trigger (a light change, wind in the vegetation, sensor noise, a dark night frame). Everything
is drawn from ``numpy.random.default_rng([seed, scene_index])``, and frame ``i`` of a scene only
depends on ``(seed, scene_index, i, size)``, so a labelled evaluation set can be regenerated
exactly. Scene plans are in fractions of the frame, so one seed gives the same scenes at any
resolution.

Night bursts under an infrared flash (``plan_ir_scene``) are drawn separately, so the daytime
scenes of a seed stay what they were: grey frames lit by the trap's own flash, dark and low in
contrast, with the flash's hot spot (vignetting), a flash power that changes from burst to burst
and a little from frame to frame (the capacitor recharging), a black level and sensor noise.

Rendering is a handful of whole-image Pillow operations on precomputed images (background and
noise fields are built once per size and cached); no per-pixel Python.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TypedDict

import numpy as np
from PIL import Image, ImageChops, ImageOps

ASSET_DIR = Path(__file__).resolve().parent / "scenes"
BAND_ROWS = 64

# Kinds of scene and how often each occurs. Half the triggers are false, as in the field.
ANIMAL = "crossing"
BLANK_KINDS = ("light", "wind", "noise", "night")
IR_ANIMAL, IR_BLANK = "ir_crossing", "ir_blank"  # night bursts under the IR flash
KIND_WEIGHTS = {ANIMAL: 0.5, "light": 0.15, "wind": 0.15, "noise": 0.1, "night": 0.1}

# Sprite name -> (common name, range of height as a fraction of the frame height).
SPECIES = {
    "cat": ("domestic cat", (0.3, 0.65)),
    "horse": ("domestic horse", (0.3, 0.7)),
}

# An animal counts as present when at least this share of its outline is inside the frame.
VISIBLE_MIN = 0.1


# Background looks: where vegetation meets the ground, and the tints of both.
class Look(TypedDict):
    horizon: float  # frame fraction where vegetation gives way to ground
    grass: tuple[float, float, float]  # RGB gains
    ground: tuple[float, float, float]


VARIANTS: tuple[Look, ...] = (
    {"horizon": 0.45, "grass": (0.55, 0.78, 0.35), "ground": (0.78, 0.70, 0.56)},
    {"horizon": 0.60, "grass": (0.48, 0.70, 0.30), "ground": (0.70, 0.62, 0.50)},
    {"horizon": 0.35, "grass": (0.66, 0.74, 0.40), "ground": (0.82, 0.76, 0.64)},
    {"horizon": 0.52, "grass": (0.60, 0.66, 0.42), "ground": (0.62, 0.58, 0.52)},
)

NOISE_SIGMA = 16.0  # grey levels of the precomputed noise field before per-scene scaling


@dataclass(frozen=True)
class IrLight:
    """How the IR flash lights a night burst. Positions and widths are frame fractions."""

    flash: float  # flash power at frame 0: share of full scale a white surface reaches
    flash_step: float  # relative change of the flash power per frame (recharge)
    flash_jitter: float  # s.d. of a further random relative change per frame
    spot_x: float  # centre of the flash's hot spot
    spot_y: float
    spot_width: float  # s.d. of the hot spot's fall-off
    spot_wobble: float  # relative change of the width per frame (LED banks differ)
    contrast: float  # IR reflectance is flatter than visible: share of the daytime contrast
    black: float  # sensor black level, grey levels
    read_noise: float  # s.d. of the sensor noise, grey levels


@dataclass(frozen=True)
class ScenePlan:
    """Everything random about one scene, drawn up front. Positions are frame fractions."""

    seed: int
    index: int
    kind: str
    variant: int
    gain0: float  # brightness of frame 0
    gain_step: float  # relative brightness change per frame
    noise: float  # noise amplitude, 0..1 of NOISE_SIGMA
    wind: float  # vegetation sway amplitude, fraction of width
    sprite: str | None = None
    height: float = 0.0  # sprite height / frame height
    cx0: float = 0.0  # sprite centre x at frame 0
    dx: float = 0.0  # centre x step per frame (signed)
    bottom: float = 0.0  # sprite bottom y (may exceed 1: partly below the frame)
    ir: IrLight | None = None  # a night frame under the IR flash

    @property
    def species(self) -> str | None:
        return SPECIES[self.sprite][0] if self.sprite else None


@dataclass(frozen=True)
class Rendered:
    image: Image.Image  # RGB at the renderer's size
    truth: str  # "animal" or "blank"
    species: str | None
    bbox: tuple[float, float, float, float] | None  # visible animal, normalised x, y, w, h


def plan_scene(seed: int, index: int) -> ScenePlan:
    rng = np.random.default_rng([seed, index])
    kinds = list(KIND_WEIGHTS)
    kind = str(rng.choice(kinds, p=list(KIND_WEIGHTS.values())))
    variant = int(rng.integers(len(VARIANTS)))
    plan = ScenePlan(
        seed=seed,
        index=index,
        kind=kind,
        variant=variant,
        gain0=float(rng.uniform(0.8, 1.15)),
        gain_step=float(rng.uniform(-0.03, 0.03)),
        noise=float(rng.uniform(0.15, 0.4)),
        wind=0.0,
    )
    if kind == ANIMAL:
        # Starting near (sometimes past) the edge it enters from; the PIR fired, so at least
        # part of the animal is already in view.
        return _with_walker(plan, rng, start=(-0.05, 0.45), bottom=(0.62, 1.12))
    if kind == "light":
        step = float(rng.uniform(0.15, 0.3)) * (1 if rng.random() < 0.5 else -1)
        return replace(plan, gain_step=step)
    if kind == "wind":
        return replace(plan, wind=float(rng.uniform(0.004, 0.015)))
    if kind == "noise":
        return replace(plan, noise=float(rng.uniform(0.7, 1.0)), gain_step=0.0)
    # night: IR-less darkness, noisy, grey
    return replace(plan, gain0=float(rng.uniform(0.08, 0.22)), noise=float(rng.uniform(0.5, 1.0)))


def plan_ir_scene(seed: int, index: int, *, animal: bool | None = None, variant: int | None = None
                  ) -> ScenePlan:  # fmt: skip
    """A night burst under the IR flash; ``animal``/``variant`` fix what is otherwise drawn.

    Drawn from its own stream (``[seed, index, 0x1E]``), so ``plan_scene`` is unchanged.
    """
    rng = np.random.default_rng([seed, index, 0x1E])
    with_animal = bool(rng.random() < 0.5) if animal is None else animal
    look = int(rng.integers(len(VARIANTS))) if variant is None else variant
    light = IrLight(
        flash=float(rng.uniform(0.6, 1.2)),
        flash_step=float(rng.uniform(-0.12, 0.12)),
        flash_jitter=0.04,
        spot_x=float(rng.uniform(0.42, 0.58)),
        spot_y=float(rng.uniform(0.45, 0.65)),
        spot_width=float(rng.uniform(0.35, 0.6)),
        spot_wobble=float(rng.uniform(-0.06, 0.06)),
        contrast=float(rng.uniform(0.35, 0.65)),
        black=float(rng.uniform(4.0, 12.0)),
        read_noise=float(rng.uniform(3.0, 8.0)),
    )
    plan = ScenePlan(
        seed=seed,
        index=index,
        kind=IR_ANIMAL if with_animal else IR_BLANK,
        variant=look,
        gain0=1.0,
        gain_step=0.0,
        noise=0.0,
        wind=0.0,
        ir=light,
    )
    if not with_animal:
        return plan
    return _with_walker(plan, rng, start=(0.0, 0.4), bottom=(0.62, 1.05))


def _with_walker(
    plan: ScenePlan,
    rng: np.random.Generator,
    start: tuple[float, float],
    bottom: tuple[float, float],
) -> ScenePlan:
    """``plan`` with an animal walking across: its species, size, entry edge and speed drawn
    from ``rng`` (always in this order, so a seed gives the same scene)."""
    sprite = str(rng.choice(sorted(SPECIES)))
    lo, hi = SPECIES[sprite][1]
    direction = 1 if rng.random() < 0.5 else -1
    at = float(rng.uniform(*start))
    return replace(
        plan,
        sprite=sprite,
        height=float(rng.uniform(lo, hi)),
        cx0=at if direction > 0 else 1.0 - at,
        dx=direction * float(rng.uniform(0.12, 0.28)),
        bottom=float(rng.uniform(*bottom)),
    )


# ---- assets -------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _texture(name: str) -> np.ndarray:
    with Image.open(ASSET_DIR / f"{name}.jpg") as im:
        return np.asarray(im.convert("L"))


@lru_cache(maxsize=4)
def _sprite(name: str) -> tuple[Image.Image, Image.Image]:
    """(RGB, L mask) of an animal, cropped to its outline."""
    if name == "cat":
        with Image.open(ASSET_DIR / "chelsea.jpg") as im:
            rgb = im.convert("RGB")
        w, h = rgb.size
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        # A soft ellipse around the head: a cut-out without hand-drawn masks.
        r = np.hypot((xx - w * 0.5) / (w * 0.46), (yy - h * 0.5) / (h * 0.49))
        mask = np.clip((1.0 - r) / 0.08, 0.0, 1.0)
        return rgb, Image.fromarray((mask * 255).astype(np.uint8), "L")
    if name == "horse":
        with Image.open(ASSET_DIR / "horse_mask.png") as im:
            mask = im.convert("L")
        mask = mask.crop(mask.getbbox())
        # Coat: brown, shaded by the gravel texture so the body is not a flat blob.
        shade = np.asarray(
            Image.fromarray(_texture("gravel")).resize(mask.size, Image.Resampling.BILINEAR),
            np.float32,
        )
        shade = 0.65 + 0.6 * shade / 255.0
        coat = np.stack([118 * shade, 80 * shade, 50 * shade], axis=-1)
        rgb = Image.fromarray(np.clip(coat, 0, 255).astype(np.uint8), "RGB")
        return rgb, mask
    raise ValueError(f"unknown sprite {name!r}")


def _tiled(name: str, tile_px: int, width: int, height: int) -> np.ndarray:
    tile = np.asarray(
        Image.fromarray(_texture(name)).resize((tile_px, tile_px), Image.Resampling.BILINEAR)
    )
    # Mirrored tiling hides the seams of a texture that was never made to tile.
    block = np.block([[tile, tile[:, ::-1]], [tile[::-1, :], tile[::-1, ::-1]]])
    reps = (math.ceil(height / block.shape[0]), math.ceil(width / block.shape[1]))
    return np.tile(block, reps)[:height, :width]


def _margin(size: tuple[int, int]) -> int:
    return max(16, size[0] // 25)


# Kept small: the simulated agent's memory is measured, and a cached background is ~3 MB at
# 1280x720. Rebuilding one costs tens of milliseconds at a scene's first frame.
@lru_cache(maxsize=2)
def _background(size: tuple[int, int], variant: int) -> Image.Image:
    """The scene's still background, with a margin on every side for wind shifts."""
    w, h = size
    m = _margin(size)
    full_w, full_h = w + 2 * m, h + 2 * m
    look = VARIANTS[variant]
    tile_px = max(32, w // 5)
    grass = _tiled("grass", tile_px, full_w, full_h)
    ground = _tiled("gravel", max(24, tile_px // 2), full_w, full_h)
    y_all = (np.arange(full_h, dtype=np.float32) - m) / h
    x = (np.arange(full_w, dtype=np.float32) - m) / w
    grass_rgb = np.array(look["grass"], np.float32)
    ground_rgb = np.array(look["ground"], np.float32)
    out = np.empty((full_h, full_w, 3), np.uint8)
    # In bands of rows, so float intermediates stay small (peak memory is measured).
    for top in range(0, full_h, BAND_ROWS):
        rows = slice(top, min(full_h, top + BAND_ROWS))
        y = y_all[rows]
        # Vegetation above the horizon, ground below, with a soft band between them.
        t = np.clip((y - look["horizon"]) / 0.08 + 0.5, 0.0, 1.0)[:, None, None]
        veg = grass[rows, :, None].astype(np.float32) * grass_rgb
        soil = ground[rows, :, None].astype(np.float32) * ground_rgb
        img = veg * (1.0 - t) + soil * t
        # Lens vignetting, as every small camera module shows.
        vignette = 1.0 - 0.35 * ((x[None, :] - 0.5) ** 2 + (y[:, None] - 0.5) ** 2)
        img *= vignette[..., None]
        out[rows] = np.clip(img, 0, 255).astype(np.uint8)
    return Image.fromarray(out, "RGB")


@lru_cache(maxsize=1)
def _unit_noise(size: tuple[int, int]) -> Image.Image:
    """Gaussian noise around 128 with NOISE_SIGMA, larger than the frame so crops can move."""
    w, h = size
    m = _margin(size)
    rng = np.random.default_rng(0x5EED)
    full_h, full_w = h + 2 * m, w + 2 * m
    out = np.empty((full_h, full_w, 3), np.uint8)
    for top in range(0, full_h, BAND_ROWS):
        rows = min(BAND_ROWS, full_h - top)
        n = rng.standard_normal((rows, full_w, 3), dtype=np.float32) * NOISE_SIGMA + 128.0
        out[top : top + rows] = np.clip(n, 0, 255).astype(np.uint8)
    return Image.fromarray(out, "RGB")


def warm_up(size: tuple[int, int], variant: int = 0) -> None:
    """Build the noise and one background for ``size`` ahead of the first trigger."""
    _background(size, variant)
    _unit_noise(size)


# ---- rendering ----------------------------------------------------------------------------


def _gain_lut(gain: float, channels: int) -> list[int]:
    lut = [min(255, int(v * gain + 0.5)) for v in range(256)]
    return lut * channels


class SceneRenderer:
    """Renders the frames of one planned scene at one size."""

    def __init__(self, plan: ScenePlan, size: tuple[int, int]) -> None:
        self.plan = plan
        self.size = size
        self._margin = _margin(size)
        self._bg = _background(size, plan.variant)
        grey = Image.new("RGB", self._bg.size, (128, 128, 128))
        self._noise = Image.blend(grey, _unit_noise(size), plan.noise) if plan.noise else None
        self._sprite: tuple[Image.Image, Image.Image, np.ndarray] | None = None
        if plan.sprite:
            rgb, mask = _sprite(plan.sprite)
            sh = max(2, round(plan.height * size[1]))
            sw = max(2, round(rgb.width * sh / rgb.height))
            rgb = rgb.resize((sw, sh), Image.Resampling.BILINEAR)
            mask = mask.resize((sw, sh), Image.Resampling.BILINEAR)
            if plan.dx < 0 and plan.sprite == "horse":
                # The silhouette faces right; an animal walks the way it faces.
                rgb, mask = ImageOps.mirror(rgb), ImageOps.mirror(mask)
            self._sprite = (rgb, mask, np.asarray(mask, np.float32))

    def background(self) -> Image.Image:
        """The still background alone at this size (no animal, light change or noise)."""
        m = self._margin
        return self._bg.crop((m, m, m + self.size[0], m + self.size[1]))

    def sprite_box(self, i: int) -> tuple[int, int, int, int] | None:
        """Pixel box (left, top, right, bottom) of the whole sprite at frame ``i``."""
        if self._sprite is None:
            return None
        w, h = self.size
        sw, sh = self._sprite[0].size
        cx = (self.plan.cx0 + i * self.plan.dx) * w
        left = round(cx - sw / 2)
        top = round(self.plan.bottom * h) - sh
        return left, top, left + sw, top + sh

    def render(self, i: int) -> Rendered:
        plan, (w, h), m = self.plan, self.size, self._margin
        frame = self._bg.crop((m, m, m + w, m + h))
        if plan.wind:
            # Vegetation sways; the ground does not.
            look = VARIANTS[plan.variant]
            top_h = max(1, round(look["horizon"] * h))
            sway = plan.wind * w * math.sin(1.7 * i + plan.index)
            ox = m + round(sway)
            oy = m + round(0.3 * sway * math.cos(2.3 * i))
            frame.paste(self._bg.crop((ox, oy, ox + w, oy + top_h)), (0, 0))
        truth, bbox = "blank", None
        box = self.sprite_box(i)
        if box is not None and self._sprite is not None:
            rgb, mask, mask_arr = self._sprite
            frame.paste(rgb, box[:2], mask)
            visible, bbox = self._visible(box, mask_arr)
            if visible >= VISIBLE_MIN:
                truth = "animal"
            else:
                bbox = None
        if plan.ir is not None:
            species = plan.species if truth == "animal" else None
            return Rendered(self._infrared(frame, i, plan.ir, box), truth, species, bbox)
        gain = max(0.03, plan.gain0 * (1.0 + plan.gain_step * i))
        if plan.kind == "night":
            frame = frame.convert("L").point(_gain_lut(gain, 1))
        else:
            frame = frame.point(_gain_lut(gain, 3))
        if self._noise is not None:
            rng = np.random.default_rng([plan.seed, plan.index, i, w, h])
            nx, ny = (int(v) for v in rng.integers(0, 2 * m + 1, size=2))
            noise = self._noise.crop((nx, ny, nx + w, ny + h))
            if frame.mode == "L":
                noise = noise.getchannel(0)
            frame = ImageChops.add(frame, noise, 1.0, -128)
        if frame.mode != "RGB":
            frame = frame.convert("RGB")
        species = plan.species if truth == "animal" else None
        return Rendered(image=frame, truth=truth, species=species, bbox=bbox)

    def _infrared(
        self,
        frame: Image.Image,
        i: int,
        light: IrLight,
        box: tuple[int, int, int, int] | None,
    ) -> Image.Image:
        """The daytime frame as the IR flash shows it at night: grey, flash-lit, noisy."""
        w, h = self.size
        rng = np.random.default_rng([self.plan.seed, self.plan.index, i, w, h, 0x1E])
        day: np.ndarray = np.asarray(frame.convert("L"), np.float32) / 255.0
        reflect: np.ndarray = 0.5 + light.contrast * (day - 0.5)
        if box is not None and self._sprite is not None:
            # Fur reflects near-infrared well: an animal shows lighter than by day.
            rgb, mask, _ = self._sprite
            alpha_im, fur_im = Image.new("L", self.size), Image.new("L", self.size)
            alpha_im.paste(mask, box[:2])
            fur_im.paste(rgb.convert("L"), box[:2])
            alpha = np.asarray(alpha_im, np.float32) / 255.0
            fur = 0.55 + 0.35 * np.asarray(fur_im, np.float32) / 255.0
            reflect = reflect * (1.0 - alpha) + fur * alpha
        power = light.flash * (
            1.0 + light.flash_step * i + light.flash_jitter * rng.standard_normal()
        )
        width = light.spot_width * (1.0 + light.spot_wobble * i)
        x = (np.arange(w, dtype=np.float32) / w - light.spot_x) ** 2
        y = (np.arange(h, dtype=np.float32) / h - light.spot_y) ** 2
        spot = np.exp(-(y[:, None] + x[None, :]) / (2.0 * width * width))
        # Nearer ground (lower in the frame) gets more of the flash than the far vegetation.
        near = 0.6 + 0.4 * np.arange(h, dtype=np.float32)[:, None] / h
        signal = 255.0 * max(0.02, power) * spot * near * reflect
        shot = np.sqrt(np.maximum(signal, 0.0)) * 0.5  # photon noise grows with the signal
        noise = rng.standard_normal((h, w), dtype=np.float32) * np.hypot(light.read_noise, shot)
        grey = np.clip(light.black + signal + noise, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")

    def _visible(
        self, box: tuple[int, int, int, int], mask_arr: np.ndarray
    ) -> tuple[float, tuple[float, float, float, float]]:
        w, h = self.size
        left, top, right, bottom = box
        x0, y0, x1, y1 = max(0, left), max(0, top), min(w, right), min(h, bottom)
        total = float(mask_arr.sum()) or 1.0
        if x1 <= x0 or y1 <= y0:
            return 0.0, (0.0, 0.0, 0.0, 0.0)
        inside = float(mask_arr[y0 - top : y1 - top, x0 - left : x1 - left].sum())
        return inside / total, (x0 / w, y0 / h, (x1 - x0) / w, (y1 - y0) / h)


def encode_jpeg(image: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def lores_luma(image: Image.Image, lores_size: tuple[int, int]) -> np.ndarray:
    """Luma at the analysis size; like the Pi's lores stream, the full field of view is scaled."""
    small = image.convert("L").resize(lores_size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(small, dtype=np.uint8).copy()


def write_dataset(
    out_dir: Path | str,
    n_scenes: int,
    seed: int,
    frames_per_scene: int = 3,
    size: tuple[int, int] = (1280, 720),
    quality: int = 90,
) -> Path:
    """Write labelled JPEGs and ``labels.csv`` (file,label,species); returns the CSV's path.

    Labels are per frame: an animal that has walked out of view leaves a blank frame.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "labels.csv"
    with csv_path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "label", "species"])
        for index in range(n_scenes):
            renderer = SceneRenderer(plan_scene(seed, index), size)
            for i in range(frames_per_scene):
                rendered = renderer.render(i)
                name = f"scene{index:05d}_f{i:02d}.jpg"
                (out / name).write_bytes(encode_jpeg(rendered.image, quality))
                writer.writerow([name, rendered.truth, rendered.species or ""])
    return csv_path
