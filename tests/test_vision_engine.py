"""The engine on whole events: observation rows, the blank decision, broken frames, geofence.

Events use the tiny real test models; species and geofence checks use the shipped default pack.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from device.config import DEFAULT_PACK_DIR, LocationSection, VisionSection
from device.vision.engine import EventFrame, VisionEngine
from tests.test_vision_pack import make_pack, photo

H, W = 240, 320


def _lores(seed: int, animal_x: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.kron(np.random.default_rng(0).normal(0, 1, (15, 20)), np.ones((16, 16))) * 18 + 110
    img = base + rng.normal(0, 3, base.shape)
    if animal_x is not None:
        img[100:150, animal_x : animal_x + 50] = 25
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture
def engine(tmp_path) -> VisionEngine:
    return VisionEngine.load(
        make_pack(tmp_path / "pack", "uint8"), VisionSection(), LocationSection()
    )


def test_an_event_gives_one_event_row_and_one_row_per_classified_frame(tmp_path, engine):
    frames = [
        EventFrame(f"m{i}", photo(tmp_path / f"{i}.jpg", seed=i), _lores(i, 30 + 100 * i))
        for i in range(3)
    ]
    verdict = engine.classify_event(frames)
    event, *per_frame = verdict.observations
    assert event.media_id is None and [r.media_id for r in per_frame] == ["m0", "m1", "m2"]
    assert all(r.classified_by == "tiny-uint8@1.2.3" for r in verdict.observations)
    assert verdict.frame_errors == {}
    # the moving dark patch is motion evidence, so the event cannot be blank
    assert not verdict.is_blank and event.observation_type != "blank"
    assert verdict.blank_score == pytest.approx(min(r.blank_score for r in per_frame), abs=1e-4)
    assert all(r.details["motion"]["evidence"] > 0.5 for r in per_frame)
    assert all(r.details["source"] == "jpeg" for r in per_frame)


def test_without_motion_or_classifier_evidence_the_event_is_blank(tmp_path):
    # An "animal" threshold of 1.0 means no classifier output counts as evidence of anything.
    strict = VisionSection(animal_threshold=1.0, blank_threshold=0.99, tiles=False)
    engine = VisionEngine.load(make_pack(tmp_path / "pack", "uint8",
                                         taxonomy=[{"label": n, "kind": "object"} for n in
                                                   ["leopard", "lion", "person", "rock"]]),
                               strict, LocationSection())  # fmt: skip
    still = [EventFrame(f"m{i}", photo(tmp_path / f"{i}.jpg", seed=9), _lores(i)) for i in range(3)]
    verdict = engine.classify_event(still)
    assert verdict.is_blank and verdict.blank_score == pytest.approx(1.0)
    assert verdict.observations[0].observation_type == "blank"
    assert verdict.observations[0].classification_probability == pytest.approx(1.0)


def test_a_broken_jpeg_falls_back_to_its_lores_frame_and_a_frame_with_neither_is_reported(
    tmp_path, engine
):
    good = photo(tmp_path / "ok.jpg")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(good.read_bytes()[:200])
    frames = [
        EventFrame("ok", good, _lores(0)),
        EventFrame("grey", broken, _lores(1)),
        EventFrame("lost", None, None),
    ]
    verdict = engine.classify_event(frames)
    rows = {r.media_id: r for r in verdict.observations}
    assert rows["grey"].details["source"] == "lores"
    assert "cannot decode" in rows["grey"].details["jpeg_error"]
    assert set(verdict.frame_errors) == {"lost"} and "lost" not in rows


def test_an_event_with_no_usable_frame_is_unclassified_and_never_blank(tmp_path, engine):
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
    verdict = engine.classify_event(
        [EventFrame("a", tmp_path / "bad.jpg", None), EventFrame("b", None, None)]
    )
    assert not verdict.is_blank
    assert [r.observation_type for r in verdict.observations] == ["unclassified"]
    assert set(verdict.frame_errors) == {"a", "b"}


def test_learnt_background_gives_a_single_frame_event_motion_evidence(tmp_path, engine):
    for i in range(3):
        engine.learn_background(_lores(20 + i))
    verdict = engine.classify_event([EventFrame("m", photo(tmp_path / "x.jpg"), _lores(5, 120))])
    motion = verdict.observations[1].details["motion"]
    assert motion["evidence"] > 0.5 and motion["bbox"][0] == pytest.approx(120 / W, abs=0.05)
    assert any(c["crop"] == "motion" for c in verdict.observations[1].details["crops"])


# ---- the default pack -------------------------------------------------------------------

needs_default_pack = pytest.mark.skipif(
    not (DEFAULT_PACK_DIR / "manifest.json").exists(), reason="default pack not built"
)


def _default(country: str | None = None, admin1: str | None = None) -> VisionEngine:
    return VisionEngine.load(
        DEFAULT_PACK_DIR, VisionSection(), LocationSection(country=country, admin1=admin1)
    )


def _scores_for(engine: VisionEngine, **by_name: float) -> np.ndarray:
    scores = np.zeros(len(engine.pack.labels), np.float32)
    for name, value in by_name.items():
        scores[engine.pack.display_names.index(name.replace("_", " "))] = value
    return scores


@needs_default_pack
def test_the_default_pack_loads_and_passes_its_golden_self_test():
    engine = _default()
    assert engine.classified_by == "efficientnet-lite0-imagenet@1.0.0"
    assert engine.self_test() is None
    golden = DEFAULT_PACK_DIR / "golden" / "chelsea.jpg"
    result = engine.classify_image(golden)
    assert result.observation_type == "animal"
    assert "tabby" in [t["label"] for t in result.details["top"]]


@needs_default_pack
def test_an_african_elephant_is_never_reported_by_a_trap_in_asia():
    kenya, india = _default("KEN"), _default("IND")
    scores = _scores_for(kenya, African_elephant=0.9, tusker=0.05)
    at_home = kenya.index.rollup(scores, kenya.geofence, 0.65, 0.65)
    abroad = india.index.rollup(scores, india.geofence, 0.65, 0.65)
    assert at_home.key == "mammalia;proboscidea;elephantidae;loxodonta;africana"
    assert abroad.key is not None and "loxodonta" not in abroad.key
    assert abroad.level in ("family", "order", "class", "kingdom")


@needs_default_pack
def test_dog_breeds_roll_up_to_one_species_without_borrowing_a_breed_name():
    engine = _default()
    scores = _scores_for(engine, beagle=0.3, basset=0.25, bloodhound=0.2)
    result = engine.index.rollup(scores, engine.geofence, 0.65, 0.65)
    assert result.level == "species" and result.key.endswith(";canis;familiaris")
    assert engine._names[result.key][1] is None


def test_an_exif_rotated_cmyk_and_greyscale_photo_each_classify(tmp_path, engine):
    base = Image.fromarray(np.random.default_rng(1).integers(0, 255, (90, 120, 3), np.uint8))
    base.convert("CMYK").save(tmp_path / "cmyk.jpg")
    base.convert("L").save(tmp_path / "grey.jpg")
    exif = Image.Exif()
    exif[0x0112] = 8
    base.save(tmp_path / "rot.jpg", exif=exif)
    for name in ("cmyk.jpg", "grey.jpg", "rot.jpg"):
        assert engine.classify_image(Path(tmp_path / name)).observation_type
