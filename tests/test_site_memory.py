"""The site memory: novelty of a frame against the remembered empty scene of one site.

The rule is a conformal test (device/vision/site_memory.py): these tests check what it
promises - zero evidence from a memory too small to judge, at most ALPHA of ordinary frames
with any evidence, strong evidence for a frame unlike anything remembered - and that the
memory is bounded, persists, and starts over on relocation, on a corrupt file and on reset.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from device.vision.site_memory import (
    ALPHA,
    CONFIDENT_BLANK,
    NEIGHBOURS,
    PROJECTED_DIMS,
    FrameEmbedding,
    SiteMemory,
    project,
)

SPACE, LAYOUT = "model@1:32", "full|0x0|1"


def frame(vectors: np.ndarray, blank_score: float = 1.0, layout: str = LAYOUT) -> FrameEmbedding:
    return FrameEmbedding(SPACE, layout, np.asarray(vectors, np.float32), blank_score)


def scene(rng: np.random.Generator, positions: int = 1, spread: float = 0.05) -> np.ndarray:
    """An empty-scene embedding: one fixed view plus small variation (light, wind)."""
    base = np.random.default_rng(0).normal(size=(positions, 32))
    return project(base + spread * rng.normal(size=(positions, 32)))


def filled(n: int, positions: int = 1, seed: int = 1, **kw) -> SiteMemory:
    memory = SiteMemory(kw.pop("capacity", 2000), **kw)
    rng = np.random.default_rng(seed)
    for i in range(n):
        memory.remember(frame(scene(rng, positions), layout=f"p{positions}"), f"event-{i}")
    return memory


def test_projection_is_fixed_normalised_and_shrinks_long_embeddings():
    raw = np.random.default_rng(2).random((3, 1280)).astype(np.float32) * 6
    once, again = project(raw), project(raw)
    assert once.shape == (3, PROJECTED_DIMS) and np.array_equal(once, again)
    assert np.allclose(np.linalg.norm(once, axis=1), 1.0, atol=0.25)
    short = project(raw[:, :8])
    assert short.shape == (3, 8) and np.allclose(np.linalg.norm(short, axis=1), 1.0)


def test_an_empty_or_small_memory_gives_zero_evidence_however_odd_the_frame():
    odd = frame(project(np.random.default_rng(9).normal(size=(1, 32)) * 10))
    assert SiteMemory(2000).novelty(odd).evidence == 0.0
    # With one position, evidence needs n + 1 > 1 / ALPHA judged frames (20 at ALPHA = 0.05).
    too_few = round(1 / ALPHA) - 1 + NEIGHBOURS
    small = filled(too_few - NEIGHBOURS, positions=1)
    assert small.novelty(frame(odd.vectors, layout="p1")).evidence == 0.0
    enough = filled(60, positions=1)
    # Farther than every judged frame: p = 1 / (n + 1), the most a memory of n can say.
    judged = enough.novelty(frame(odd.vectors, layout="p1"))
    assert judged.p_value == pytest.approx(1 / 61)
    assert judged.evidence == pytest.approx(1 - (1 / 61) / ALPHA)


def test_with_tiles_the_memory_must_be_larger_before_it_judges():
    odd = project(np.random.default_rng(9).normal(size=(9, 32)) * 10)
    assert filled(150, positions=9).novelty(frame(odd, layout="p9")).evidence == 0.0
    assert filled(400, positions=9).novelty(frame(odd, layout="p9")).evidence > 0.5


def test_few_ordinary_frames_get_any_evidence_and_an_odd_tile_gets_much():
    memory = filled(300, positions=4, seed=3)
    rng = np.random.default_rng(4)
    ordinary = [memory.novelty(frame(scene(rng, 4), layout="p4")).evidence for _ in range(300)]
    # The conformal guarantee: at most ALPHA of frames like the remembered ones get evidence.
    assert np.mean(np.array(ordinary) > 0) <= ALPHA + 0.03
    odd = scene(rng, 4)
    odd[2] = project(rng.normal(size=(1, 32)))[0]  # tile 2 shows something else entirely
    judged = memory.novelty(frame(odd, layout="p4"))
    assert judged.evidence > 0.5 and judged.position == 2


def test_a_frame_from_another_model_or_crop_layout_is_not_judged():
    memory = filled(100, positions=1)
    odd = project(np.random.default_rng(9).normal(size=(1, 32)) * 10)
    assert memory.novelty(FrameEmbedding("other@2:32", "p1", odd)).evidence == 0.0
    assert memory.novelty(frame(odd, layout="p2")).evidence == 0.0


def test_a_new_model_or_layout_starts_the_memory_over():
    memory = filled(50, positions=1)
    memory.remember(FrameEmbedding("other@2:32", "p1", scene(np.random.default_rng(5))), "e")
    assert len(memory) == 1 and memory.space == "other@2:32"


def _brute_force_spread(memory: SiteMemory) -> np.ndarray:
    """Each remembered frame's mean distance to its NEIGHBOURS nearest of other events."""
    n = len(memory)
    vecs = memory._vecs[:, :n].astype(np.float32) * memory._scale[:, :n, None]
    groups = memory._group[:n]
    out = np.full((vecs.shape[0], n), np.nan)
    for p in range(vecs.shape[0]):
        d = np.linalg.norm(vecs[p][:, None, :] - vecs[p][None, :, :], axis=2)
        d[groups[:, None] == groups[None, :]] = np.inf
        near = np.sort(d, axis=1)[:, :NEIGHBOURS]
        ok = np.isfinite(near).all(axis=1)
        out[p, ok] = near[ok].mean(axis=1)
    return out


def test_the_incremental_neighbour_lists_match_a_brute_force_count_through_evictions():
    memory = SiteMemory(40)
    rng = np.random.default_rng(6)
    for i in range(130):  # three times round the ring: evictions on every add after the 40th
        event = f"e{i // 3}"  # bursts of 3 frames: near-copies that must not judge each other
        memory.remember(frame(project(rng.normal(size=(2, 32))), layout="p2"), event)
        if i % 13 == 0 or i == 129:
            assert np.allclose(memory._spread(), _brute_force_spread(memory), equal_nan=True)
    assert len(memory) == 40


def test_the_memory_is_bounded_and_forgets_the_oldest_first():
    memory = SiteMemory(10)
    rng = np.random.default_rng(7)
    for i in range(25):
        memory.remember(frame(scene(rng)), f"e{i}")
    assert len(memory) == 10
    assert memory._vecs.dtype == np.int8 and memory._vecs.nbytes == 10 * 32  # a byte a value


def test_only_empty_scene_frames_are_learnt_from_an_event():
    memory = SiteMemory(100)
    rng = np.random.default_rng(8)
    sure, unsure = frame(scene(rng), CONFIDENT_BLANK), frame(scene(rng), CONFIDENT_BLANK - 0.01)
    frames = {"a": sure, "b": unsure}
    assert memory.learn_from_event("ev1", frames, timelapse=False, blank_event=True, named=False)
    assert len(memory) == 1  # only the confident blank frame
    assert memory.learn_from_event("ev2", frames, timelapse=True, blank_event=False, named=False)
    assert len(memory) == 3  # a timelapse with nothing named: every frame
    for kind in ({"timelapse": True, "named": True}, {"timelapse": False, "named": False}):
        memory.learn_from_event("ev3", frames, blank_event=False, **kind)
    assert len(memory) == 3  # an animal in the timelapse, or a kept event: nothing


def test_it_persists_across_a_restart_and_judges_the_same(tmp_path):
    path = tmp_path / "site_memory.npz"
    first = filled(80, positions=3, site="dep-1", path=path)
    probe = frame(scene(np.random.default_rng(11), 3, spread=0.3), layout="p3")
    before = first.novelty(probe)
    assert first.save() and path.exists()
    second = SiteMemory(2000, site="dep-1", path=path)
    second.load()
    assert len(second) == 80 and second.novelty(probe) == before
    # and it goes on learning where the first left off
    second.remember(frame(scene(np.random.default_rng(12), 3), layout="p3"), "later")
    assert len(second) == 81


def test_a_smaller_capacity_after_a_restart_keeps_the_newest_frames(tmp_path):
    path = tmp_path / "m.npz"
    big = filled(30, site="s", path=path)
    big.save()
    small = SiteMemory(10, site="s", path=path)
    small.load()
    assert len(small) == 10
    newest = big._vecs[:, 20:30]
    assert np.array_equal(np.sort(small._vecs[:, :10], axis=1), np.sort(newest, axis=1))


def test_a_relocated_trap_starts_empty_and_overwrites_the_old_file(tmp_path, caplog):
    path = tmp_path / "m.npz"
    filled(50, site="dep-1|here", path=path).save()
    moved = SiteMemory(2000, site="dep-1|elsewhere", path=path)
    with caplog.at_level(logging.INFO, "camtrap.vision"):
        moved.load()
    assert len(moved) == 0 and "relocated" in caplog.text
    again = SiteMemory(2000, site="dep-1|elsewhere", path=path)
    again.load()
    assert len(again) == 0  # the old site's scene does not come back after a restart
    live = filled(20, site="a", path=path)
    live.move_to("b")
    assert len(live) == 0 and live.site == "b"


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # torn
        lambda data: b"\x00not a memory file at all",
        lambda data: data[:100] + bytes(200) + data[300:],  # bit rot inside the zip
    ],
)
def test_a_corrupt_file_is_logged_in_one_line_and_the_memory_starts_empty(tmp_path, caplog, damage):
    path = tmp_path / "m.npz"
    filled(40, site="s", path=path).save()
    path.write_bytes(damage(path.read_bytes()))
    memory = SiteMemory(2000, site="s", path=path)
    with caplog.at_level(logging.WARNING, "camtrap.vision"):
        memory.load()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0].getMessage()
    assert str(path) in warnings[0].getMessage() and len(memory) == 0
    memory.remember(frame(scene(np.random.default_rng(1))), "fresh")  # and it works on
    assert len(memory) == 1 and memory.save()


def test_saving_follows_the_rule_not_every_frame(tmp_path):
    now = [0.0]
    path = tmp_path / "m.npz"
    memory = SiteMemory(200, site="s", path=path, clock=lambda: now[0])
    rng = np.random.default_rng(2)
    for i in range(9):  # 5% of 200 = 10 frames make a save
        memory.remember(frame(scene(rng)), f"e{i}")
        assert not memory.maybe_save()
    memory.remember(frame(scene(rng)), "e9")
    assert memory.maybe_save() and not memory.dirty
    memory.remember(frame(scene(rng)), "late")
    assert not memory.maybe_save()
    now[0] += 6 * 3600  # six hours on, one unsaved frame is saved
    assert memory.maybe_save()


def test_an_unwritable_data_dir_is_logged_once_and_the_memory_carries_on(tmp_path, caplog):
    memory = SiteMemory(100, site="s", path=tmp_path / "missing" / "m.npz")
    memory.remember(frame(scene(np.random.default_rng(3))), "e")
    with caplog.at_level(logging.WARNING, "camtrap.vision"):
        assert not memory.save() and not memory.save()
    assert len([r for r in caplog.records if "not saved" in r.getMessage()]) == 1
    assert len(memory) == 1 and memory.dirty


def test_reset_forgets_everything_and_saves_the_empty_memory(tmp_path):
    path = tmp_path / "m.npz"
    memory = filled(30, site="s", path=path)
    memory.save()
    assert memory.reset("test") == 30 and len(memory) == 0
    reloaded = SiteMemory(2000, site="s", path=path)
    reloaded.load()
    assert len(reloaded) == 0
