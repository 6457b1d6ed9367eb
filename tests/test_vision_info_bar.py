"""The camera's info bar: found on frames that carry one, never on night scenes or skies
without text, cut from motion and from the crops, and configurable."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from device.config import LocationSection, VisionSection
from device.vision import info_bar
from device.vision.engine import EventFrame, VisionEngine
from device.vision.info_bar import NO_BAR, InfoBar, detect, detect_in_image
from tests.test_vision_pack import make_pack

W, H = 640, 480


def textured(seed: int, level: float = 120.0, spread: float = 30.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.normal(0, 1, (H // 16, W // 16))
    img = np.kron(coarse, np.ones((16, 16))) * spread + level + rng.normal(0, 4, (H, W))
    return np.clip(img, 0, 255)


def with_strip(
    scene: np.ndarray,
    share: float,
    where: str = "bottom",
    colour: int = 0,
    text: str = "TRAILCAM 07-31-2016 15:16:34  23C",
) -> Image.Image:
    """``scene`` with a printed strip burnt in, as a trail camera does it (Pillow text)."""
    image = Image.fromarray(scene.astype(np.uint8)).convert("RGB")
    rows = round(share * H)
    top = 0 if where == "top" else H - rows
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, top, W, top + rows - 1), fill=(colour,) * 3)
    font = ImageFont.load_default()
    ink = (255,) * 3 if colour < 128 else (0,) * 3
    draw.text((12, top + max(1, rows // 2 - 5)), text, fill=ink, font=font)
    draw.text((W // 2, top + max(1, rows // 2 - 5)), "M 970  48F 8C", fill=ink, font=font)
    return image


def luma(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L"))


@pytest.mark.parametrize(
    ("share", "where", "colour"),
    [(0.04, "bottom", 0), (0.06, "bottom", 255), (0.03, "top", 0), (0.1, "top", 250)],
)
def test_a_burnt_in_strip_is_found_at_its_edge_with_its_height(share, where, colour):
    image = with_strip(textured(1), share, where, colour)
    for found in (detect(luma(image)), detect_in_image(image)):
        got = found.bottom if where == "bottom" else found.top
        other = found.top if where == "bottom" else found.bottom
        assert got == pytest.approx(share, abs=1.5 / H) and other == 0.0
        assert found.source == "auto"


def test_strips_at_both_edges_are_both_found_also_on_the_lores_plane():
    image = with_strip(textured(2), 0.05, "top", 0)
    image = with_strip(np.asarray(image.convert("L"), np.float64), 0.05, "bottom", 0)
    lores = np.asarray(image.convert("L").resize((320, 240), Image.Resampling.BILINEAR))
    found = detect(lores)
    assert found.top == pytest.approx(0.05, abs=0.01) and found.bottom == pytest.approx(
        0.05, abs=0.01
    )


def test_a_dark_night_scene_without_text_is_not_a_strip():
    night = textured(3, level=12, spread=6)
    assert detect(night.astype(np.uint8)) == NO_BAR
    black = np.zeros((H, W), np.uint8)  # a lens cap: flat black, no text anywhere
    assert detect(black) == NO_BAR
    dark_edge = textured(4)
    dark_edge[-40:] = np.random.default_rng(5).normal(10, 3, (40, W))  # dark ground, no text
    assert detect(np.clip(dark_edge, 0, 255).astype(np.uint8)) == NO_BAR


def test_a_pale_sky_with_branches_fading_into_the_scene_is_not_a_strip():
    sky = textured(6)
    rows = np.arange(80, dtype=np.float64)[:, None]
    sky[:80] = 214 + rows * 0.2  # pale, flat, slowly brightening downwards
    rng = np.random.default_rng(7)
    for _ in range(25):  # dark branches across it
        x, y = int(rng.integers(0, W - 30)), int(rng.integers(0, 80))
        sky[y : y + 2, x : x + 30] = 60
    assert detect(np.clip(sky, 0, 255).astype(np.uint8)).top == 0.0


def test_text_alone_makes_the_difference_between_a_strip_and_a_flat_edge():
    blank_strip = with_strip(textured(8), 0.05, "bottom", 0, text="")
    blank_strip_luma = luma(blank_strip).copy()
    blank_strip_luma[-round(0.05 * H) :] = 0  # the strip's colour, no text at all
    assert detect(blank_strip_luma) == NO_BAR
    assert detect(luma(with_strip(textured(8), 0.05, "bottom", 0))).bottom > 0


def test_configured_band_and_none_override_what_is_on_the_frame():
    assert info_bar.configured("none", 0.1, 0.1) == NO_BAR
    assert info_bar.configured("band", 0.0, 0.07) == InfoBar(0.0, 0.07, "band")
    assert info_bar.configured("band", 0.0, 0.0) == NO_BAR
    assert info_bar.configured("auto", 0.0, 0.07) is None  # look at the frames


def test_the_scene_box_and_cut_leave_out_the_strip_and_boxes_map_back():
    bar = InfoBar(0.05, 0.1, "band")
    assert bar.scene_box((640, 480)) == (0, 24, 640, 432)
    plane = np.arange(240 * 4, dtype=np.uint8).reshape(240, 4)
    assert bar.cut(plane).shape == (240 - 12 - 24, 4)
    assert bar.to_frame((0.0, 0.0, 1.0, 1.0)) == pytest.approx((0.0, 0.05, 1.0, 0.85))
    assert info_bar.union([NO_BAR, InfoBar(0.02, 0, "auto"), InfoBar(0, 0.06, "auto")]) == (
        InfoBar(0.02, 0.06, "auto")
    )


def _strip_event(tmp_path, seeds=(11, 12, 13)):
    """Three frames of one still scene whose only change is the clock in the strip."""
    scene = textured(10)
    frames = []
    for i, _ in enumerate(seeds):
        image = with_strip(scene, 0.06, "bottom", 0, text=f"CAM  2016-07-31 15:16:{10 + 17 * i}")
        path = tmp_path / f"f{i}.jpg"
        image.save(path, quality=92)
        lores = np.asarray(image.convert("L").resize((320, 240), Image.Resampling.BILINEAR))
        frames.append(EventFrame(f"m{i}", path, lores))
    return frames


def test_the_strip_is_left_out_of_motion_and_of_every_crop(tmp_path):
    frames = _strip_event(tmp_path)
    pack = make_pack(tmp_path / "pack")
    auto = VisionEngine.load(pack, VisionSection(max_tiles=4), LocationSection())
    seen: list[tuple[int, int]] = []
    burst = auto.motion.burst

    def spy(planes):  # type: ignore[no-untyped-def]
        seen.extend(p.shape for p in planes)
        return burst(planes)

    auto.motion.burst = spy  # type: ignore[method-assign]
    verdict = auto.classify_event(frames)
    strip_rows = round(0.06 * 240)
    assert seen == [(240 - strip_rows, 320)] * 3  # motion never sees the strip's rows
    for row in verdict.observations[1:]:
        assert row.details["info_bar"]["bottom"] == pytest.approx(0.06, abs=0.01)
        assert row.details["motion"]["evidence"] == 0.0  # the ticking clock is not motion
        for crop in row.details["crops"]:
            _, y, _, h = crop["box"]
            assert y + h <= 0.94 + 0.005  # no crop reaches into the strip
    none = VisionEngine.load(pack, VisionSection(info_bar="none", max_tiles=4), LocationSection())
    rows = none.classify_event(frames).observations[1:]
    assert all("info_bar" not in r.details for r in rows)
    assert max(c["box"][1] + c["box"][3] for r in rows for c in r.details["crops"]) == 1.0


def test_a_configured_band_is_cut_even_where_auto_finds_nothing(tmp_path):
    path = tmp_path / "plain.jpg"
    Image.fromarray(textured(20).astype(np.uint8)).convert("RGB").save(path)
    pack = make_pack(tmp_path / "pack")
    band = VisionSection(info_bar="band", info_bar_top=0.1, tiles=False)
    result = VisionEngine.load(pack, band, LocationSection()).classify_image(path)
    assert result.details["info_bar"] == {"top": 0.1, "bottom": 0.0, "source": "band"}
    assert result.details["crops"][0]["box"][1] == pytest.approx(0.1, abs=0.005)
    auto = VisionEngine.load(pack, VisionSection(tiles=False), LocationSection())
    assert "info_bar" not in auto.classify_image(path).details
