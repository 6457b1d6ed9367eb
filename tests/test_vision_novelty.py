"""Novelty in the engine: the embedding comes from the same invoke as the scores, the frame's
details record its novelty evidence, and novelty only ever adds evidence of presence.

Uses the tiny real test model with an embedding output (tests/data/models/README.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from device.config import LocationSection, VisionSection
from device.vision.engine import EventFrame, VisionEngine
from device.vision.pack import write_pack
from device.vision.site_memory import SiteMemory
from tests.test_vision_pack import LABELS, TAXONOMY, make_pack

MODELS = Path(__file__).parent / "data" / "models"


def embedding_pack(out: Path) -> Path:
    """A tiny pack whose model also outputs an 8-value embedding, named by its manifest."""
    files = {
        "model.tflite": (MODELS / "tiny_embedding_q.tflite").read_bytes(),
        "labels.txt": ("\n".join(LABELS) + "\n").encode(),
        "taxonomy.json": json.dumps(TAXONOMY).encode(),
    }
    manifest = {
        "name": "tiny-embedding",
        "version": "1.0.0",
        "min_agent_version": "0.1.0",
        "model": {
            "file": "model.tflite",
            "preprocess": {"resize": "squash", "mean": [127.5] * 3, "std": [127.5] * 3},
            "output": "probabilities",
            "embedding": {"size": 8},
        },
        "labels": {"file": "labels.txt", "format": "plain"},
        "taxonomy": {"file": "taxonomy.json"},
        "thresholds": {"species": 0.65, "rollup": 0.65, "blank": 0.95, "animal": 0.2},
    }
    return write_pack(out, manifest, files)


def picture(seed: int, size=(96, 64), smooth: bool = True) -> Image.Image:
    rng = np.random.default_rng(seed)
    if smooth:  # an empty scene: one view, a little light and noise
        base = np.random.default_rng(0).integers(60, 200, (4, 6, 3)).astype(np.float32)
        img = np.kron(base, np.ones((size[1] // 4, size[0] // 6, 1))) * rng.uniform(0.95, 1.05)
        img += rng.normal(0, 3, img.shape)
    else:
        img = rng.integers(0, 255, (size[1], size[0], 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


@pytest.fixture
def engine(tmp_path) -> VisionEngine:
    vision = VisionSection(tiles=True, max_tiles=2, animal_threshold=1.0, blank_threshold=0.5)
    return VisionEngine.load(embedding_pack(tmp_path / "pack"), vision, LocationSection())


def test_each_crop_gets_its_embedding_from_the_same_invoke_as_its_scores(engine):
    calls = []
    real = engine.model.run_with_embedding

    def counted(batch):
        calls.append(1)
        return real(batch)

    engine.model.run_with_embedding = counted  # type: ignore[method-assign]
    result = engine.analyse(picture(1))
    crops = result.row.details["crops"]
    assert len(calls) == len(crops) == 3  # full + 2 tiles, one invoke each
    assert result.embedding is not None and result.embedding.vectors.shape == (3, 8)
    assert result.row.details["novelty"] == {
        "evidence": 0.0,
        "p": 1.0,
        "position": "full",
        "remembered": 0,
    }


def test_novelty_never_raises_a_blank_score_on_random_frames_and_memories(engine):
    """Property, over random frames and memories of random contents and sizes."""
    rng = np.random.default_rng(42)
    for trial in range(12):
        memory = SiteMemory(500)
        for i in range(int(rng.integers(0, 120))):
            remembered = engine.analyse(picture(1000 * trial + i, smooth=bool(rng.random() < 0.7)))
            assert remembered.embedding is not None
            memory.remember(remembered.embedding, f"t{trial}-e{i}")
        for _ in range(6):
            image = picture(int(rng.integers(1 << 30)), smooth=bool(rng.random() < 0.5))
            engine.use_site_memory(None)
            without = engine.analyse(image).blank_score
            engine.use_site_memory(memory)
            judged = engine.analyse(image)
            assert judged.blank_score <= without + 1e-9
            e = judged.row.details["novelty"]["evidence"]
            assert judged.blank_score == pytest.approx(without * (1 - e), abs=1e-6)


def test_a_frame_unlike_the_remembered_empty_scene_is_kept(engine):
    memory = SiteMemory(500)
    for i in range(400):  # a long record of the empty scene (more than m / ALPHA = 60)
        shown = engine.analyse(picture(i))
        memory.remember(shown.embedding, f"timelapse-{i}")
    engine.use_site_memory(memory)
    empty = engine.analyse(picture(10_000))
    assert empty.row.details["novelty"]["remembered"] == 400
    odd = engine.analyse(picture(7, smooth=False))
    assert odd.row.details["novelty"]["evidence"] > 0.5
    assert odd.blank_score < empty.blank_score


def test_events_carry_the_embeddings_of_their_jpeg_frames_only(tmp_path, engine):
    good = tmp_path / "a.jpg"
    picture(3).save(good)
    broken = tmp_path / "b.jpg"
    broken.write_bytes(good.read_bytes()[:100])
    lores = np.asarray(picture(4).convert("L"))
    verdict = engine.classify_event([EventFrame("a", good, None), EventFrame("b", broken, lores)])
    assert set(verdict.embeddings) == {"a"}  # the grey stand-in is not the memory's view
    rows = {r.media_id: r for r in verdict.observations}
    assert rows["b"].details["novelty"] is None and rows["b"].details["source"] == "lores"
    assert verdict.embeddings["a"].blank_score == pytest.approx(rows["a"].blank_score, abs=1e-4)


def test_eval_runs_get_a_fresh_memory_per_engine_fed_like_the_agent_feeds_its_own(tmp_path):
    pack = embedding_pack(tmp_path / "pack")
    vision = VisionSection(animal_threshold=1.0)  # nothing gets named: "unknown" at most
    one = VisionEngine.load(pack, vision, LocationSection())
    two = VisionEngine.load(pack, vision, LocationSection())
    assert one.site_memory is not None and one.site_memory is not two.site_memory
    photo = tmp_path / "t.jpg"
    picture(5).save(photo)
    verdict = one.classify_event([EventFrame("t", photo, None)])
    assert one.remember_empty_scene("ev", verdict, "timeLapse") == 1
    assert one.remember_empty_scene("ev2", verdict, "activityDetection") == (
        1 if verdict.is_blank and verdict.blank_score >= 0.95 else 0
    )
    assert len(two.site_memory) == 0


def test_a_model_without_an_embedding_gives_no_novelty_and_the_same_verdicts(tmp_path):
    engine = VisionEngine.load(make_pack(tmp_path / "p"), VisionSection(), LocationSection())
    assert engine.embedding_space is None and engine.site_memory is None
    engine.use_site_memory(SiteMemory(100))
    assert engine.site_memory is None
    result = engine.analyse(picture(2))
    assert result.embedding is None and result.row.details["novelty"] is None


def test_site_memory_off_in_the_config_means_no_memory(tmp_path):
    vision = VisionSection(site_memory=False)
    engine = VisionEngine.load(embedding_pack(tmp_path / "p"), vision, LocationSection())
    assert engine.site_memory is None
    assert engine.analyse(picture(2)).row.details["novelty"]["remembered"] == 0


@pytest.mark.parametrize(
    ("is_blank", "scores", "remembered"),
    [
        (False, (0.97, 0.96), 2),  # nothing is called blank (the default table), yet all sure
        (True, (0.97, 0.90), 0),  # called blank at a low threshold, but one frame is unsure
        (True, (0.99, 0.98), 2),
    ],
    ids=["confident-under-no-threshold", "called-blank-not-confident", "called-and-confident"],
)
def test_what_the_memory_learns_does_not_move_with_the_threshold_in_force(
    is_blank, scores, remembered
):
    """Frames of an event teach the memory when every one is a confident blank (>= 0.95),
    whether or not the threshold in force calls the event blank."""
    from device.vision.engine import EventVerdict, ObservationRow, remember_empty_scene
    from device.vision.site_memory import FrameEmbedding

    rng = np.random.default_rng(7)
    frames = {
        f"m{i}": FrameEmbedding("m@1:8", "full", rng.normal(size=(1, 8)).astype(np.float32), s)
        for i, s in enumerate(scores)
    }
    verdict = EventVerdict(
        [ObservationRow.unclassified("m@1", {})], min(scores), is_blank, {}, frames
    )
    memory = SiteMemory(capacity=10)
    assert remember_empty_scene(memory, "e1", verdict, "activityDetection") == remembered
    assert len(memory) == remembered
