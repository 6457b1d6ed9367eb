"""Motion evidence from lores luma frames: real movement counts, light and noise do not."""

from __future__ import annotations

import numpy as np

from device.vision.motion import MotionModel, largest_blob

H, W = 240, 320


def _scene(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # A textured, mid-grey background like grass: smooth blobs plus fine grain.
    coarse = rng.normal(0, 1, (H // 16, W // 16))
    texture = np.kron(coarse, np.ones((16, 16))) * 18 + 110
    return texture


def _frame(base, noise_seed, gain=1.0, offset=0.0, animal_at=None, size=28):
    rng = np.random.default_rng(100 + noise_seed)
    img = base * gain + offset + rng.normal(0, 3, base.shape)
    if animal_at is not None:
        x, y = animal_at
        img[y : y + size, x : x + size] = 30  # a dark animal-sized patch
    return np.clip(img, 0, 255).astype(np.uint8)


def _model() -> MotionModel:
    return MotionModel(sigmas=4.0, min_area=0.002, full_area=0.02, alpha=0.2)


def test_an_animal_crossing_the_burst_gives_strong_evidence_where_it_is():
    base = _scene()
    frames = [_frame(base, i, animal_at=(40 + 90 * i, 120)) for i in range(3)]
    results = _model().burst(frames)
    assert all(r.evidence > 0.5 for r in results)
    x, y, _, _ = results[0].bbox
    assert 0.05 < x < 0.3 and 0.4 < y < 0.7  # the blob covers the first position


def test_a_global_light_change_and_sensor_noise_give_no_evidence():
    base = _scene()
    frames = [_frame(base, 0), _frame(base, 1, gain=1.3, offset=15), _frame(base, 2, gain=0.7)]
    results = _model().burst(frames)
    assert all(r.evidence == 0.0 for r in results)
    assert all(r.comparisons == 2 for r in results)


def test_a_dark_noisy_night_burst_gives_no_evidence():
    base = _scene() * 0.03  # a few grey levels of scene under sensor noise
    frames = []
    for i in range(3):
        rng = np.random.default_rng(200 + i)
        frames.append(np.clip(base + rng.normal(0, 2, base.shape), 0, 255).astype(np.uint8))
    assert all(r.evidence == 0.0 for r in _model().burst(frames))


def test_a_single_frame_has_no_evidence_until_a_background_is_learnt():
    base = _scene()
    model = _model()
    lone = model.burst([_frame(base, 0, animal_at=(150, 100))])
    assert lone[0].comparisons == 0 and lone[0].evidence == 0.0
    for i in range(3):
        model.learn(_frame(base, 10 + i, gain=0.9 + 0.05 * i))
    with_bg = model.burst([_frame(base, 0, animal_at=(150, 100))])
    assert with_bg[0].comparisons == 1 and with_bg[0].evidence > 0.5
    still = model.burst([_frame(base, 5, gain=1.2)])
    assert still[0].evidence == 0.0


def test_a_tiny_change_below_the_minimum_area_is_not_evidence():
    base = _scene()
    frames = [_frame(base, i, animal_at=(40 + 90 * i, 120), size=5) for i in range(2)]
    assert all(r.evidence == 0.0 for r in _model().burst(frames))


def test_missing_lores_frames_get_no_evidence_and_do_not_break_the_others():
    base = _scene()
    frames = [_frame(base, 0, animal_at=(40, 120)), None, _frame(base, 2, animal_at=(220, 120))]
    results = _model().burst(frames)
    assert results[1].comparisons == 0 and results[0].evidence > 0.5


def test_largest_blob_finds_the_biggest_connected_region():
    mask = np.zeros((10, 12), bool)
    mask[1:3, 1:3] = True  # 4 cells
    mask[5:9, 6:11] = True  # 20 cells
    area, box = largest_blob(mask)
    assert area == 20 and box == (5, 6, 9, 11)
    assert largest_blob(np.zeros((4, 4), bool)) == (0, None)


def _reference_largest(mask: np.ndarray) -> int:
    """Plain flood fill, to check the run-based labelling against."""
    seen = np.zeros_like(mask)
    best = 0
    for r, c in zip(*np.nonzero(mask), strict=True):
        if seen[r, c]:
            continue
        stack, size = [(r, c)], 0
        seen[r, c] = True
        while stack:
            y, x = stack.pop()
            size += 1
            for ny, nx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                inside = 0 <= ny < mask.shape[0] and 0 <= nx < mask.shape[1]
                if inside and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    stack.append((ny, nx))
        best = max(best, size)
    return best


def test_run_based_labelling_agrees_with_a_flood_fill_on_random_masks():
    rng = np.random.default_rng(42)
    for density in (0.2, 0.45, 0.6):
        for _ in range(20):
            mask = rng.random((24, 32)) < density
            assert largest_blob(mask)[0] == _reference_largest(mask)
