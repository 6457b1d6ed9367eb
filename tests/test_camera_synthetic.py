"""Synthetic scenes: deterministic, labelled, and looking like what a camera trap sees."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from device.config import CameraSection
from device.hardware.camera import CameraError, open_camera
from device.hardware.camera_synthetic import SyntheticCamera
from device.hardware.scene import (
    ANIMAL,
    SPECIES,
    SceneRenderer,
    plan_scene,
    write_dataset,
)

SMALL = (320, 180)
COMMON_NAMES = {common for common, _ in SPECIES.values()}


class SteppedClock:
    """A monotonic clock the test moves by hand, so scene boundaries are exact."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def section(**overrides: object) -> CameraSection:
    values: dict[str, object] = {
        "backend": "synthetic",
        "main_size": (640, 360),
        "lores_size": (160, 120),
        "jpeg_quality": 85,
    }
    values.update(overrides)
    return CameraSection(**values)


def camera_with_clock(**overrides: object) -> tuple[SyntheticCamera, SteppedClock]:
    clock = SteppedClock()
    camera = SyntheticCamera(section(**overrides), clock=clock)
    camera.start()
    return camera, clock


def luma(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L"), np.float32)


def first_scene(seed: int, want, limit: int = 200) -> int:
    for index in range(limit):
        if want(plan_scene(seed, index)):
            return index
    raise AssertionError("no such scene in the first scenes of the sequence")


def test_frames_are_jpegs_at_main_size_with_lores_luma() -> None:
    camera, _ = camera_with_clock()
    frame = camera.capture()
    with Image.open(io.BytesIO(frame.jpeg)) as im:
        assert im.format == "JPEG"
        assert im.size == (640, 360)
        assert im.mode == "RGB"
    assert (frame.width, frame.height) == (640, 360)
    assert frame.lores is not None
    assert frame.lores.shape == (120, 160) and frame.lores.dtype == np.uint8
    assert frame.error is None
    assert frame.meta["truth"] in ("animal", "blank")


def test_jpeg_quality_follows_the_section() -> None:
    low, _ = camera_with_clock(jpeg_quality=20)
    high, _ = camera_with_clock(jpeg_quality=95)
    assert len(low.capture().jpeg) < len(high.capture().jpeg)


def test_same_seed_gives_the_same_frames_and_another_seed_does_not() -> None:
    def burst(seed: int) -> list[bytes]:
        camera, clock = camera_with_clock(synthetic_seed=seed)
        out = []
        for step in (0.0, 0.5, 0.5, 5.0, 0.5):
            clock.now += step
            out.append(camera.capture().jpeg)
        return out

    assert burst(7) == burst(7)
    assert burst(7) != burst(8)


def test_captures_close_together_are_one_scene_and_a_pause_starts_the_next() -> None:
    camera, clock = camera_with_clock()
    metas = []
    for step in (0.0, 0.5, 0.5, 2.5, 0.4):
        clock.now += step
        metas.append(camera.capture().meta)
    assert [m["scene"] for m in metas] == [0, 0, 0, 1, 1]
    assert [m["frame"] for m in metas] == [0, 1, 2, 0, 1]


def test_truth_matches_the_plan_and_names_the_species() -> None:
    camera, clock = camera_with_clock(synthetic_seed=3)
    seen_animal = seen_blank = False
    for index in range(30):
        clock.now += 10.0
        meta = camera.capture().meta
        plan = plan_scene(3, index)
        assert meta["kind"] == plan.kind
        if plan.kind == ANIMAL:
            # The PIR fired because the animal is there: frame 0 always shows it.
            assert meta["truth"] == "animal"
            assert meta["species"] == plan.species
            assert meta["species"] in COMMON_NAMES
            x, y, w, h = meta["bbox"]
            assert 0 <= x <= 1 and 0 <= y <= 1 and 0 < w <= 1 and 0 < h <= 1
            seen_animal = True
        else:
            assert meta["truth"] == "blank"
            assert "species" not in meta
            seen_blank = True
    assert seen_animal and seen_blank


def test_the_sequence_holds_every_kind_of_scene() -> None:
    kinds = {plan_scene(0, index).kind for index in range(200)}
    assert kinds == {"crossing", "light", "wind", "noise", "night"}
    sprites = {plan_scene(0, index).sprite for index in range(200)} - {None}
    assert sprites == set(SPECIES)


def test_some_animals_start_partly_outside_the_frame() -> None:
    partial = 0
    for index in range(200):
        plan = plan_scene(0, index)
        if plan.kind != ANIMAL:
            continue
        box = SceneRenderer(plan, SMALL).sprite_box(0)
        assert box is not None
        left, _top, right, bottom = box
        if left < 0 or right > SMALL[0] or bottom > SMALL[1]:
            partial += 1
    assert partial > 0


def test_the_animal_moves_across_the_frame_during_a_burst() -> None:
    index = first_scene(0, lambda p: p.kind == ANIMAL and abs(p.dx) >= 0.15)
    plan = replace(plan_scene(0, index), noise=0.0, gain_step=0.0)
    renderer = SceneRenderer(plan, SMALL)
    f0, f1 = renderer.render(0), renderer.render(1)
    assert f0.truth == f1.truth == "animal"
    # Its box moved in the planned direction.
    assert (f1.bbox[0] + f1.bbox[2] / 2 - f0.bbox[0] - f0.bbox[2] / 2) * plan.dx > 0
    diff = np.abs(luma(f1.image) - luma(f0.image))
    path = np.zeros(diff.shape, bool)
    for i in (0, 1):
        left, top, right, bottom = renderer.sprite_box(i)
        path[max(0, top) : max(0, bottom), max(0, left) : max(0, right)] = True
    assert diff[path].mean() > 10
    assert diff[~path].mean() < 1  # nothing else changed (noise and light drift are off)


def blockwise_ratio_spread(frame: Image.Image, background: Image.Image) -> float:
    """Largest deviation of 16x16 block brightness ratios from their median.

    A global light change scales every block alike; a pasted animal does not.
    """
    f, b = luma(frame), luma(background) + 1.0
    h, w = (f.shape[0] // 16) * 16, (f.shape[1] // 16) * 16
    fb = f[:h, :w].reshape(h // 16, 16, w // 16, 16).mean(axis=(1, 3))
    bb = b[:h, :w].reshape(h // 16, 16, w // 16, 16).mean(axis=(1, 3))
    ratio = fb / bb
    return float(np.abs(ratio - np.median(ratio)).max() / np.median(ratio))


@pytest.mark.parametrize("kind", ["light", "noise", "night"])
def test_blank_scenes_have_no_animal(kind: str) -> None:
    index = first_scene(0, lambda p: p.kind == kind)
    plan = replace(plan_scene(0, index), noise=0.0)
    renderer = SceneRenderer(plan, SMALL)
    for i in range(3):
        rendered = renderer.render(i)
        assert rendered.truth == "blank" and rendered.species is None
        assert blockwise_ratio_spread(rendered.image, renderer.background()) < 0.12


def test_the_no_animal_check_would_see_an_animal() -> None:
    index = first_scene(0, lambda p: p.kind == ANIMAL)
    plan = replace(plan_scene(0, index), noise=0.0)
    renderer = SceneRenderer(plan, SMALL)
    assert blockwise_ratio_spread(renderer.render(0).image, renderer.background()) > 0.12


def test_light_scenes_change_brightness_between_frames() -> None:
    index = first_scene(0, lambda p: p.kind == "light")
    renderer = SceneRenderer(plan_scene(0, index), SMALL)
    means = [luma(renderer.render(i).image).mean() for i in range(3)]
    assert abs(means[2] - means[0]) / means[0] > 0.2


def test_night_scenes_are_dark_and_grey() -> None:
    index = first_scene(0, lambda p: p.kind == "night")
    image = SceneRenderer(plan_scene(0, index), SMALL).render(0).image
    pixels = np.asarray(image, np.int16)
    assert pixels.mean() < 45
    assert np.abs(pixels[..., 0] - pixels[..., 1]).max() == 0  # monochrome, as under IR


def test_wind_moves_the_vegetation_but_not_the_ground() -> None:
    index = first_scene(0, lambda p: p.kind == "wind")
    plan = replace(plan_scene(0, index), noise=0.0, gain_step=0.0)
    renderer = SceneRenderer(plan, SMALL)
    a, b = luma(renderer.render(0).image), luma(renderer.render(1).image)
    diff = np.abs(a - b)
    assert diff[: SMALL[1] // 4].mean() > 5  # top of the frame: vegetation
    assert diff[-SMALL[1] // 5 :].mean() < 1  # bottom: ground


def test_one_seed_gives_the_same_scene_at_any_resolution() -> None:
    small = SceneRenderer(plan_scene(5, 2), (320, 180)).render(0)
    large = SceneRenderer(plan_scene(5, 2), (1280, 720)).render(0)
    assert small.truth == large.truth
    shrunk = large.image.resize((320, 180), Image.BILINEAR)
    assert np.abs(luma(shrunk) - luma(small.image)).mean() < 20


def test_capture_before_start_is_an_error() -> None:
    with pytest.raises(CameraError):
        SyntheticCamera(section()).capture()


def test_open_camera_picks_the_synthetic_backend() -> None:
    camera = open_camera(section())
    assert isinstance(camera, SyntheticCamera)


def test_write_dataset_writes_labelled_jpegs(tmp_path: Path) -> None:
    csv_path = write_dataset(tmp_path / "set", n_scenes=8, seed=11, frames_per_scene=3, size=SMALL)
    with csv_path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["file", "label", "species"]
    body = rows[1:]
    assert len(body) == 24
    for name, label, species in body:
        with Image.open(tmp_path / "set" / name) as im:
            assert im.format == "JPEG" and im.size == SMALL
        assert label in ("animal", "blank")
        assert (species != "") == (label == "animal")
        if species:
            assert species in COMMON_NAMES
    for index in range(8):
        first = body[index * 3]
        assert (first[1] == "animal") == (plan_scene(11, index).kind == ANIMAL)


def test_write_dataset_is_reproducible(tmp_path: Path) -> None:
    write_dataset(tmp_path / "a", n_scenes=3, seed=2, size=SMALL)
    write_dataset(tmp_path / "b", n_scenes=3, seed=2, size=SMALL)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
