"""A trap serving a head: the default pack's backbone runs, the head's weights are applied to
its embedding, and the head's labels, kinds, geofence and thresholds make the verdict.

Every head here is a real pack written with ``write_pack`` over the shipped default pack (its
backbone sha256 is that of the default pack's ``model.tflite``). The weights are built from
the backbone's own embeddings of two of the project's synthetic scenes, an animal crossing
and the empty view, so that what the head must answer on each is known by construction: the
head's score for "animal" is ``+SHARPNESS`` on the animal scene and ``-SHARPNESS`` on the
empty one.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from device.config import LocationSection, VisionSection
from device.contracts.hashing import sha256_file
from device.contracts.head import HeadWeights
from device.contracts.pack import DEFAULT_PACK_DIR, write_pack
from device.hardware.scene import SceneRenderer, encode_jpeg, plan_scene
from device.ota.engine_guard import EngineGuard
from device.vision import commands
from device.vision.engine import EventFrame, VisionEngine
from device.vision.pack import PackError, load_pack
from device.vision.preprocess import crop_resize, load_image
from device.vision.site_memory import SiteMemory
from tests.support.trap_db import open_store
from tests.test_vision_novelty import embedding_pack
from tests.test_vision_worker_site_memory import (
    memory_for,
    run_worker,
    settings_for,
    timelapse_events,
)

BACKBONE = "efficientnet-lite0-imagenet@1.0.0"
BACKBONE_SHA = sha256_file(DEFAULT_PACK_DIR / "model.tflite")
SHARPNESS = 8.0
# The views the head tells apart: full frame only, no info bar, so the one crop the engine
# classifies is the one the weights were built from.
VIEW = {"tiles": False, "motion_crop": False, "info_bar": "none"}
BLANK = ("blank", "", "blank")
LION = ("animal", "mammalia;carnivora;felidae;panthera;leo", "lion")
LEOPARD = ("animal", "mammalia;carnivora;felidae;panthera;pardus", "leopard")
HUMAN = ("human", "mammalia;primates;hominidae;homo;sapiens", "human")


def label_line(taxonomy: str, common: str) -> str:
    """A SpeciesNet label, its id stable across retraining (uuid5 of the name)."""
    fields = taxonomy if taxonomy else ";;;;"
    return f"{uuid.uuid5(uuid.NAMESPACE_URL, 'camtrap-test/' + common)};{fields};{common}"


def scene_jpeg(index: int) -> bytes:
    """Frame 1 of synthetic scene (seed 3, ``index``) as the camera would store it."""
    return encode_jpeg(SceneRenderer(plan_scene(3, index), (640, 360)).render(1).image, 90)


ANIMAL_SCENE = 0  # a cat crossing (plan_scene(3, 0).sprite == "cat")
EMPTY_SCENE = 4  # no sprite: the empty view


@dataclass(frozen=True)
class Scenes:
    animal: Path
    empty: Path
    animal_embedding: np.ndarray
    empty_embedding: np.ndarray


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Scenes:
    return make_scenes(tmp_path_factory.mktemp("scenes"))


def make_scenes(root: Path) -> Scenes:
    """The two scenes on disk and the default backbone's embedding of each, computed the way
    the engine computes it (same decode scale, same full-frame crop, same encoder)."""
    assert plan_scene(3, ANIMAL_SCENE).sprite and not plan_scene(3, EMPTY_SCENE).sprite
    engine = VisionEngine.load(DEFAULT_PACK_DIR, VisionSection(**VIEW), LocationSection())
    paths, embeddings = [], []
    for name, index in (("animal", ANIMAL_SCENE), ("empty", EMPTY_SCENE)):
        path = root / f"{name}.jpg"
        path.write_bytes(scene_jpeg(index))
        image = load_image(path, engine.min_short_side())
        [(_, box)] = engine.crops_for(image.size, None)
        batch = engine.encoder.encode(crop_resize(image, box, engine.model.input_size))
        _, embedding = engine.model.run_with_embedding(batch)
        assert embedding is not None
        paths.append(path)
        embeddings.append(embedding.astype(np.float64))
    return Scenes(paths[0], paths[1], embeddings[0], embeddings[1])


def presence_direction(scenes: Scenes) -> tuple[np.ndarray, float]:
    """``(w, c)`` with ``w @ e + c`` = +1 on the animal scene's embedding, -1 on the empty."""
    d = scenes.animal_embedding - scenes.empty_embedding
    middle = (scenes.animal_embedding + scenes.empty_embedding) / 2
    w = d / (d @ d / 2)
    return w, float(-(w @ middle))


def head_weights(
    scenes: Scenes, classes: Sequence[tuple[str, str, str]], odds: dict[str, float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Float weights: every animal/human class scores +SHARPNESS on the animal scene and the
    blank class +SHARPNESS on the empty one; ``odds`` adds a log-odds offset per common name
    (identical rows differ only by their bias, so their ratio survives int8 exactly)."""
    w, c = presence_direction(scenes)
    rows, bias = [], []
    for kind, _, common in classes:
        sign = -1.0 if kind == "blank" else 1.0
        rows.append(sign * SHARPNESS * w)
        bias.append(sign * SHARPNESS * c + (odds or {}).get(common, 0.0))
    return np.stack(rows), np.array(bias)


def head_pack(
    out: Path,
    scenes: Scenes,
    classes: Sequence[tuple[str, str, str]],
    *,
    name: str = "site-head",
    version: str = "1.0.0",
    odds: dict[str, float] | None = None,
    geofence: dict[str, Any] | None = None,
    golden: tuple[Path, str] | None = None,
    backbone_sha: str = BACKBONE_SHA,
    backbone: str = BACKBONE,
    storage: str = "int8",
    weights: tuple[np.ndarray, np.ndarray] | None = None,
    embedding_size: int = 1280,
    extra: dict[str, Any] | None = None,
) -> Path:
    """A head pack over the default backbone, as ``camtrap-cloud train`` writes one."""
    w, b = weights if weights is not None else head_weights(scenes, classes, odds)
    files = {
        "head.npz": HeadWeights.fit_float(w, b, storage).to_bytes(),
        "labels.txt": "".join(label_line(t, c) + "\n" for _, t, c in classes).encode(),
    }
    manifest: dict[str, Any] = {
        "kind": "head",
        "name": name,
        "version": version,
        "min_agent_version": "0.1.0",
        "backbone": {
            "name": backbone.split("@")[0],
            "version": backbone.split("@")[1],
            "sha256": backbone_sha,
            "embedding_size": embedding_size,
        },
        "head": {"file": "head.npz", "weights": storage, "kinds": [k for k, _, _ in classes]},
        "labels": {"file": "labels.txt", "format": "speciesnet"},
        "thresholds": {"species": 0.65, "rollup": 0.65, "blank": 0.95, "animal": 0.2},
        **(extra or {}),
    }
    if geofence is not None:
        files["geofence.json"] = json.dumps(geofence).encode()
        manifest["geofence"] = {"file": "geofence.json"}
    if golden is not None:
        image, expect = golden
        files["golden/scene.jpg"] = image.read_bytes()
        manifest["golden"] = [{"file": "golden/scene.jpg", "expect_top": [expect], "top_k": 1}]
    return write_pack(out, manifest, files)


def serve(pack: Path, **vision: Any) -> VisionEngine:
    return VisionEngine.load(pack, VisionSection(**{**VIEW, **vision}), LocationSection())


# -- serving ---------------------------------------------------------------------------------


def test_a_head_classifies_with_its_own_labels_and_kinds_and_names_both_models(tmp_path, scenes):
    pack = head_pack(tmp_path / "head", scenes, [BLANK, LION], golden=(scenes.animal, "lion"))
    engine = serve(pack)  # the golden self-test ran: the animal scene's top class is lion
    assert engine.classified_by == f"{BACKBONE}+site-head@1.0.0"
    assert engine.model.num_classes == 2 and engine.pack.labels[1].endswith(";lion")
    frames = [
        EventFrame("m-animal", scenes.animal, None),
        EventFrame("m-empty", scenes.empty, None),
    ]
    verdict = engine.classify_event(frames)
    event, animal, empty = verdict.observations
    assert [r.classified_by for r in verdict.observations] == [f"{BACKBONE}+site-head@1.0.0"] * 3
    assert (animal.observation_type, animal.scientific_name, animal.taxon_level) == (
        "animal",
        "Panthera leo",
        "species",
    )
    assert animal.classification_probability == pytest.approx(1.0, abs=1e-3)
    assert [t["label"] for t in animal.details["top"]] == ["lion", "blank"]
    # The head's blank class is the blank score: 1 - P(blank) is the evidence of presence.
    assert empty.observation_type == "blank" and empty.blank_score > 0.99
    assert event.observation_type == "animal" and not verdict.is_blank


def test_an_event_of_empty_frames_is_blank_by_the_heads_blank_class(tmp_path, scenes):
    engine = serve(head_pack(tmp_path / "head", scenes, [BLANK, LION, HUMAN]))
    verdict = engine.classify_event([EventFrame("m", scenes.empty, None)])
    assert verdict.is_blank and verdict.observations[0].observation_type == "blank"
    assert verdict.observations[0].classified_by == f"{BACKBONE}+site-head@1.0.0"


def test_a_head_label_with_a_taxonomy_rolls_up_and_the_heads_geofence_applies(tmp_path, scenes):
    # On the animal scene: lion 0.7, leopard 0.3 (the blank class has next to nothing).
    odds = {"lion": float(np.log(0.7 / 0.3))}
    fence = {LION[1]: {"allow": {"KEN": []}}}  # lions are reported in Kenya only
    pack = head_pack(tmp_path / "head", scenes, [BLANK, LION, LEOPARD], odds=odds, geofence=fence)
    vision = VisionSection(**VIEW)
    kenya = VisionEngine.load(pack, vision, LocationSection(country="KEN"))
    row = kenya.classify_image(scenes.animal)
    assert (row.scientific_name, row.taxon_level) == ("Panthera leo", "species")
    assert row.confidence == pytest.approx(0.7, abs=0.01)
    # Elsewhere the lion is fenced out; the leopard alone (0.3) is not enough for a species,
    # so the verdict rolls up to the genus both belong to.
    usa = VisionEngine.load(pack, vision, LocationSection(country="USA"))
    row = usa.classify_image(scenes.animal)
    assert (row.scientific_name, row.taxon_level) == ("Panthera", "genus")
    assert row.confidence == pytest.approx(1.0, abs=0.01)
    fenced = [step for step in row.details["rollup"] if step.get("geofenced")]
    assert [step["taxon"] for step in fenced] == [LION[1]]


def test_a_head_without_its_own_geofence_uses_the_backbones(tmp_path, scenes):
    pack = load_pack(head_pack(tmp_path / "head", scenes, [BLANK, LION]))
    assert pack.geofence == load_pack(DEFAULT_PACK_DIR).geofence and pack.geofence
    assert pack.thresholds["blank"] == 0.95 and pack.calibration is None


def test_a_float16_head_serves_like_an_int8_one(tmp_path, scenes):
    engine = serve(head_pack(tmp_path / "head", scenes, [BLANK, LION], storage="float16"))
    assert engine.pack.head is not None and engine.pack.head.storage == "float16"
    assert engine.classify_image(scenes.animal).scientific_name == "Panthera leo"


def test_a_head_whose_golden_image_disagrees_fails_its_self_test(tmp_path, scenes):
    pack = head_pack(tmp_path / "head", scenes, [BLANK, LION], golden=(scenes.empty, "lion"))
    with pytest.raises(PackError) as caught:
        serve(pack)
    assert str(caught.value) == (
        f"model pack {pack}: self-test failed: golden/scene.jpg: expected lion in top 1, got blank"
    )


# -- finding the backbone --------------------------------------------------------------------


def test_a_head_whose_backbone_is_nowhere_is_refused_in_one_line(tmp_path, scenes):
    missing = "ab" * 32
    pack = head_pack(tmp_path / "heads" / "h", scenes, [BLANK, LION], backbone_sha=missing)
    with pytest.raises(PackError) as caught:
        serve(pack)
    message = str(caught.value)
    assert message == (
        f"model pack {pack}: head site-head@1.0.0 needs backbone {BACKBONE} "
        f"(sha256 {missing[:12]}…), not found in: {DEFAULT_PACK_DIR}, {pack.parent}/*"
    )
    assert "\n" not in message


def test_camtrap_model_info_of_a_head_without_its_backbone_prints_one_line(
    tmp_path, scenes, capsys
):
    pack = head_pack(tmp_path / "h", scenes, [BLANK, LION], backbone_sha="cd" * 32)
    assert commands.main(["model", "info", str(pack)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith(f"camtrap model info: model pack {pack}: head site-head@1.0.0 needs")


def test_a_backbone_with_the_right_model_but_another_embedding_size_is_not_taken(tmp_path, scenes):
    rng = np.random.default_rng(0)
    small = (rng.normal(size=(2, 8)), np.zeros(2))
    pack = head_pack(tmp_path / "h", scenes, [BLANK, LION], weights=small, embedding_size=8)
    with pytest.raises(PackError, match="not found in") as caught:
        load_pack(pack)
    assert "its model.embedding is size 1280, the head needs size 8" in str(caught.value)


def backbone_pack(out: Path, name: str = "lite0-backbone", version: str = "2.0.0") -> Path:
    """The default pack's model as a backbone-kind pack: an embedding, no classes."""
    default = json.loads((DEFAULT_PACK_DIR / "manifest.json").read_text())
    manifest = {"kind": "backbone", "name": name, "version": version, "model": default["model"]}
    return write_pack(
        out, manifest, {"model.tflite": (DEFAULT_PACK_DIR / "model.tflite").read_bytes()}
    )


def test_a_backbone_pack_alone_refuses_to_serve(tmp_path):
    pack = backbone_pack(tmp_path / "backbone")
    with pytest.raises(PackError) as caught:
        serve(pack)
    assert str(caught.value) == (
        f"model pack {pack}: a backbone pack gives no verdict alone: install a head over it"
    )
    info = commands.describe_pack(pack)
    assert (info["kind"], info["embedding_size"], info["labels"]) == ("backbone", 1280, 0)


def test_of_the_packs_with_its_backbones_model_the_one_the_head_names_is_chosen(tmp_path, scenes):
    packs = tmp_path / "packs"  # as the OTA layout keeps them
    backbone_pack(packs / "lite0-backbone@2.0.0")
    default = head_pack(packs / "site-head@1.0.0", scenes, [BLANK, LION])
    loaded = load_pack(default)  # the sibling has the same model file, but another name
    assert loaded.backbone_path == DEFAULT_PACK_DIR
    assert loaded.classified_by == f"{BACKBONE}+site-head@1.0.0"
    sibling = head_pack(
        packs / "site-head@1.0.1", scenes, [BLANK, LION], version="1.0.1",
        backbone="lite0-backbone@2.0.0",
    )  # fmt: skip
    loaded = load_pack(sibling)
    assert loaded.backbone_path == packs / "lite0-backbone@2.0.0"
    assert loaded.classified_by == "lite0-backbone@2.0.0+site-head@1.0.1"


def test_a_backbone_known_by_another_name_is_named_as_it_was_found(tmp_path, scenes):
    backbone = backbone_pack(tmp_path / "elsewhere" / "lite0")
    pack = head_pack(tmp_path / "h", scenes, [BLANK, LION], backbone="renamed@3.0.0")
    assert load_pack(pack, backbones=[backbone]).classified_by == (
        "lite0-backbone@2.0.0+site-head@1.0.0"
    )
    # Nothing is named renamed@3.0.0: the first place with the model file wins.
    assert load_pack(pack).classified_by == f"{BACKBONE}+site-head@1.0.0"


def test_camtrap_model_info_shows_a_heads_backbone_classes_and_weights(tmp_path, scenes, capsys):
    pack = head_pack(tmp_path / "h", scenes, [BLANK, LION, HUMAN])
    assert commands.main(["model", "info", str(pack), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "head"
    assert info["classified_by"] == f"{BACKBONE}+site-head@1.0.0"
    assert info["backbone"]["sha256"] == BACKBONE_SHA
    assert info["backbone"]["found"] == str(DEFAULT_PACK_DIR)
    assert info["classes"] == [
        {"label": "blank", "kind": "blank"},
        {"label": "lion", "kind": "animal"},
        {"label": "human", "kind": "human"},
    ]
    assert info["head"]["weights"] == "int8"
    assert info["head"]["bytes"] == (pack / "head.npz").stat().st_size
    assert info["output"]["shape"] == [1, 3]


# -- the site memory survives a head over the same backbone -----------------------------------


def test_a_head_over_the_same_backbone_shares_the_full_packs_embedding_space(tmp_path, scenes):
    full = serve(DEFAULT_PACK_DIR)
    head = serve(head_pack(tmp_path / "head", scenes, [BLANK, LION]))
    other = serve(embedding_pack(tmp_path / "tiny"))
    assert full.embedding_space == head.embedding_space
    assert other.embedding_space != full.embedding_space


def test_a_worker_keeps_its_site_memory_across_a_head_install_not_a_new_backbone(tmp_path, scenes):
    settings = settings_for(tmp_path)  # timelapse frames of an empty scene, nothing named
    settings.vision = settings.vision.model_copy(update=VIEW)
    store = open_store(settings)
    memory = memory_for(settings)
    full = VisionEngine.load(DEFAULT_PACK_DIR, settings.vision, settings.location)
    guard = EngineGuard(full)
    run_worker(settings, store, guard, memory, timelapse_events(store, 3))
    assert len(memory) == 3
    head = VisionEngine.load(
        head_pack(tmp_path / "head", scenes, [BLANK, LION]), settings.vision, settings.location
    )
    guard.swap(head)  # what an OTA install of the head does
    run_worker(settings, store, guard, memory, timelapse_events(store, 2, start=3))
    assert head.site_memory is memory and len(memory) == 5  # kept, and still learning
    tiny = VisionEngine.load(embedding_pack(tmp_path / "tiny"), settings.vision, settings.location)
    guard.swap(tiny)  # a different backbone: its vectors mean nothing next to the old ones
    run_worker(settings, store, guard, memory, timelapse_events(store, 1, start=5))
    assert len(memory) == 1


def test_a_head_model_applies_the_head_to_the_embedding_of_the_same_invoke(tmp_path, scenes):
    engine = serve(head_pack(tmp_path / "head", scenes, [BLANK, LION]))
    full = serve(DEFAULT_PACK_DIR)
    image = Image.open(io.BytesIO(scenes.animal.read_bytes())).convert("RGB")
    batch = full.encoder.encode(crop_resize(image, (0, 0, 360, 360), (224, 224)))
    scores, embedding = engine.model.run_with_embedding(batch)
    _, backbone_embedding = full.model.run_with_embedding(batch)
    assert embedding is not None and backbone_embedding is not None
    np.testing.assert_array_equal(embedding, backbone_embedding)
    assert engine.pack.head is not None
    np.testing.assert_allclose(scores, engine.pack.head.apply(embedding), rtol=1e-6)
    np.testing.assert_allclose(engine.model.run(batch), scores, rtol=1e-6)
    assert scores.shape == (2,) and scores.sum() == pytest.approx(1.0)


def test_a_fresh_memory_in_ram_is_used_when_no_worker_lends_one(tmp_path, scenes):
    engine = serve(head_pack(tmp_path / "head", scenes, [BLANK, LION]))
    assert isinstance(engine.site_memory, SiteMemory)


# -- what the trap reports it serves ------------------------------------------------------------


def test_the_heartbeat_and_status_name_the_backbone_and_the_head(tmp_path, scenes):
    from device.agent import Agent
    from device.status import collect, render
    from tests.support.world import trap_settings

    pack = head_pack(tmp_path / "packs" / "site-head@1.0.0", scenes, [BLANK, LION])
    settings = trap_settings(tmp_path / "trap", vision={"enabled": True, "pack": pack, **VIEW})
    agent = Agent(settings)
    try:
        agent._load_vision()  # what start() does before the uplink's first heartbeat
        assert agent._model_version() == f"{BACKBONE}+site-head@1.0.0"
    finally:
        agent.camera.close()
    report = collect(settings)
    assert report["model"] == {
        "pack": str(pack),
        "classified_by": f"{BACKBONE}+site-head@1.0.0",
        "kind": "head",
        "head": "site-head@1.0.0",
        "backbone": BACKBONE,
        "backbone_pack": str(DEFAULT_PACK_DIR),
        "problem": None,
    }
    assert f"head site-head@1.0.0 on backbone {BACKBONE}" in render(report)
    # The head's own blank threshold (its manifest: not recall-calibrated) is the one shown.
    assert report["blank_filter"]["threshold"] == 0.95
