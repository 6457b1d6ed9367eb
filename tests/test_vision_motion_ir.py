"""Night bursts under the IR flash: grey, dark, vignetted, with the flash changing power and
hot spot from frame to frame and burst to burst. An animal moving through one gives motion
evidence; blank ones give none, within a burst and against a background learnt from other
night bursts.

Scenes come from ``device.hardware.scene.plan_ir_scene``. The re-lighting in motion.py was
designed on seeds 1 and 2 and checked on these (5-8) while it was built, so they are not a
held-out set; held-out figures are in docs/vision.md.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from device.hardware.scene import IR_ANIMAL, IR_BLANK, SceneRenderer, lores_luma, plan_ir_scene
from device.vision.motion import MotionModel, reduce, relit

SIZE, LORES = (640, 360), (320, 240)


def _model() -> MotionModel:
    return MotionModel(sigmas=4.0, min_area=0.002, full_area=0.02, alpha=0.2)


def _burst(plan, frames: int = 3) -> list[np.ndarray]:
    renderer = SceneRenderer(plan, SIZE)
    return [lores_luma(renderer.render(i).image, LORES) for i in range(frames)]


def _plans(seed: int, animal: bool, n: int = 10, **light):
    plans = [plan_ir_scene(seed, i, animal=animal) for i in range(n)]
    return [replace(p, ir=replace(p.ir, **light)) if light else p for p in plans]


def test_ir_scenes_are_grey_dark_vignetted_and_drawn_apart_from_the_daytime_ones():
    plan = plan_ir_scene(5, 0, animal=False)
    assert plan.kind == IR_BLANK and plan.ir is not None
    assert plan_ir_scene(5, 0, animal=True).kind == IR_ANIMAL
    frame = np.asarray(SceneRenderer(plan, SIZE).render(0).image, np.float32)
    assert np.array_equal(frame[..., 0], frame[..., 1])  # grey, as IR frames are
    luma = frame[..., 0]
    assert luma.mean() < 110
    h, w = luma.shape
    centre = luma[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3].mean()
    assert centre > 1.5 * luma[:, : w // 10].mean()  # the flash's hot spot
    again = np.asarray(SceneRenderer(plan_ir_scene(5, 0, animal=False), SIZE).render(0).image)
    assert np.array_equal(frame.astype(np.uint8), again)  # deterministic


@pytest.mark.parametrize(
    "light",
    [
        {},
        {"flash_step": -0.3},  # the capacitor drains over the burst
        {"spot_width": 0.25, "spot_wobble": 0.12},  # a narrow hot spot that changes shape
        {"flash": 0.35, "read_noise": 8.0},  # a weak flash and a noisy sensor
    ],
)
def test_blank_ir_bursts_with_flash_changes_and_noise_give_no_motion_evidence(light):
    for plan in _plans(5, animal=False, **light):
        results = _model().burst(_burst(plan))
        assert all(r.comparisons == 2 for r in results)
        assert max(r.evidence for r in results) == 0.0, (plan.index, light)


@pytest.mark.parametrize("light", [{}, {"flash_step": -0.3}, {"flash": 0.35, "read_noise": 8.0}])
def test_an_animal_moving_through_an_ir_burst_gives_motion_evidence(light):
    found = []
    for plan in _plans(6, animal=True, **light):
        renderer = SceneRenderer(plan, SIZE)
        rendered = [renderer.render(i) for i in range(3)]
        if not any(r.truth == "animal" for r in rendered):
            continue
        frames = [lores_luma(r.image, LORES) for r in rendered]
        found.append(max(r.evidence for r in _model().burst(frames)))
    assert len(found) >= 8
    assert min(found) > 0.5


def test_against_a_background_learnt_from_other_nights_blanks_stay_blank_and_animals_show():
    blanks, animals = [], []
    for index in range(10):
        for animal in (False, True):
            plan = plan_ir_scene(7, index, animal=animal)
            model = _model()
            for j in range(3):  # three earlier bursts of the same site, each lit its own way
                earlier = plan_ir_scene(8, 10 * index + j, animal=False, variant=plan.variant)
                model.learn(_burst(earlier, 1)[0])
            (single,) = model.burst(_burst(plan, 1))
            assert single.comparisons == 1
            truth = SceneRenderer(plan, SIZE).render(0).truth
            if truth == "animal":
                animals.append(single.evidence)
            elif not animal:
                blanks.append(single.evidence)
    assert blanks and max(blanks) == 0.0
    assert len(animals) >= 6 and min(animals) > 0.3


def test_relighting_undoes_a_moved_hot_spot_and_a_gain_but_not_an_animal():
    rng = np.random.default_rng(3)
    h, w = 48, 64
    y, x = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    texture = 0.6 + 0.25 * rng.random((h, w))

    def lit(cx: float, width: float, power: float) -> np.ndarray:
        return 200 * power * np.exp(-((x - cx) ** 2 + (y - 0.5) ** 2) / (2 * width**2)) * texture

    a = lit(0.45, 0.3, 1.0).astype(np.float32)
    b = lit(0.55, 0.35, 0.7).astype(np.float32)
    b_animal = b.copy()
    b_animal[20:30, 28:38] += 60
    assert np.abs(relit(b, a) - a).max() < 0.05 * a.max()
    residual = np.abs(relit(b_animal, a) - a)
    assert residual[22:28, 30:36].min() > 20  # the animal is still there
    assert np.median(residual) < 1.0


def test_reduce_keeps_fractional_block_means():
    luma = np.zeros((240, 320), np.uint8)
    luma[0, 0] = 1  # one grey level in one pixel of a 5x5 block
    cells = reduce(luma)
    assert cells.shape == (48, 64) and cells[0, 0] == pytest.approx(1 / 25)
