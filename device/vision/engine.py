"""The vision engine: a loaded pack that turns an event's frames into observation rows.

Per frame: the full frame (as the manifest's resize mode frames it), square tiles that cover
the edges, and a crop around the largest motion blob are classified; together with motion
evidence they give the frame's ``blank_score`` (docs/vision.md). The event is blank only when
every frame is. Species come from the most confident crop, rolled up through the taxonomy and
the geofence of the device's location.

An engine is independent of every other engine: a failed load of another pack leaves a
serving engine untouched. One engine per thread (the interpreter is not thread-safe).
"""

from __future__ import annotations

import copy
import io
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from PIL import Image

import device
from device.contracts.protocol import ObservationType, TaxonLevel
from device.vision.motion import MotionModel, MotionResult
from device.vision.pack import ModelPack, PackError, load_pack
from device.vision.preprocess import (
    Box,
    ImageError,
    InputEncoder,
    array_to_image,
    crop_resize,
    full_box,
    load_image,
    region_box,
    tile_boxes,
    to_rgb,
)
from device.vision.runtime import Model, ModelError
from device.vision.taxa import Geofence, TaxonIndex, key_level, scientific_name_of

if TYPE_CHECKING:
    from device.config import LocationSection, VisionSection

HUMAN_TAXONOMY = "mammalia;primates;hominidae;homo;sapiens"
EVEN_ODDS = 0.5


@dataclass(frozen=True)
class EventFrame:
    media_id: str
    jpeg_path: Path | None  # the stored full-resolution JPEG (None if the frame failed)
    lores: np.ndarray | None  # luma plane (h, w) uint8 from capture, or None


@dataclass
class ObservationRow:  # maps 1:1 onto the `observations` table in device/store/schema.py
    media_id: str | None  # None = event-level observation
    observation_type: ObservationType
    scientific_name: str | None
    common_name: str | None
    taxon_level: TaxonLevel | None
    taxonomy: str | None  # "class;order;family;genus;species"
    count: int | None
    classification_probability: float | None
    blank_score: float | None
    classified_by: str  # "name@version"
    bbox: tuple[float, float, float, float] | None = None  # normalised x, y, w, h top-left
    details: dict[str, Any] = field(default_factory=dict)  # top-k, rollup path, geofence, ms

    @classmethod
    def unclassified(
        cls, classified_by: str, details: dict[str, Any], blank_score: float | None = None
    ) -> ObservationRow:
        """An event-level row saying the event could not be classified (never blank)."""
        return cls(
            media_id=None,
            observation_type="unclassified",
            scientific_name=None,
            common_name=None,
            taxon_level=None,
            taxonomy=None,
            count=None,
            classification_probability=None,
            blank_score=blank_score,
            classified_by=classified_by,
            details=details,
        )


@dataclass
class EventVerdict:
    observations: list[ObservationRow]  # at least one event-level row
    blank_score: float  # 0..1, higher = more surely blank
    is_blank: bool
    frame_errors: dict[str, str]  # media_id -> why that frame could not be classified


@dataclass
class ImageResult:
    file: str
    observation_type: ObservationType
    scientific_name: str | None
    common_name: str | None
    taxon_level: TaxonLevel | None
    taxonomy: str | None
    confidence: float | None
    blank_score: float
    is_blank: bool
    ms: float
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Thresholds:
    species: float
    rollup: float
    blank: float
    animal: float


@dataclass
class _Crop:
    name: str
    box: Box
    scores: np.ndarray
    kinds: dict[str, float]
    nonblank: float


@dataclass
class _FrameResult:
    row: ObservationRow
    blank_score: float


def _norm_box(box: Box, size: tuple[int, int]) -> tuple[float, float, float, float]:
    """A pixel box (left, top, right, bottom) as normalised x, y, w, h from the top left."""
    w, h = size
    return (
        round(box[0] / w, 4),
        round(box[1] / h, 4),
        round((box[2] - box[0]) / w, 4),
        round((box[3] - box[1]) / h, 4),
    )


class ServingEngine(Protocol):
    """What the classification worker uses of the engine it serves: a ``VisionEngine``, or
    the OTA room's ``EngineGuard`` around one (trials and rollback)."""

    def classify_event(self, frames: Sequence[EventFrame]) -> EventVerdict: ...

    def learn_background(self, lores: np.ndarray) -> None: ...

    @property
    def classified_by(self) -> str | None: ...


class VisionEngine:
    def __init__(
        self, pack: ModelPack, model: Model, vision: VisionSection, location: LocationSection
    ) -> None:
        self.pack = pack
        self.model = model
        self.vision = vision
        self.classified_by = pack.classified_by
        self.encoder = InputEncoder(model.input, pack.mean, pack.std)
        self.index = TaxonIndex(pack.taxa)
        self.geofence = Geofence(
            rules=pack.geofence if vision.geofence else {},
            country=location.country,
            admin1=location.admin1,
            species_keys=self.index.species_keys,
        )
        t = pack.thresholds
        # Without a blank class the classifier's "something is here" evidence is its summed
        # animal+human+vehicle probability, and the pack's blank threshold (meant for a
        # blank class) does not apply: a frame is blank when that evidence is below even odds.
        default_blank = t["blank"] if self.index.has_blank_class else EVEN_ODDS
        self.thresholds = Thresholds(
            species=vision.species_threshold
            if vision.species_threshold is not None
            else t["species"],
            rollup=vision.rollup_threshold if vision.rollup_threshold is not None else t["rollup"],
            blank=vision.blank_threshold if vision.blank_threshold is not None else default_blank,
            animal=vision.animal_threshold if vision.animal_threshold is not None else t["animal"],
        )
        self.motion = MotionModel(
            sigmas=vision.motion_sigma,
            min_area=vision.motion_min_area,
            full_area=vision.motion_full_area,
            alpha=vision.background_alpha,
        )
        self._names = self._taxon_names()
        self.load_ms = 0.0

    # ----------------------------------------------------------------- loading

    @classmethod
    def load(cls, pack: Path, vision: VisionSection, location: LocationSection) -> VisionEngine:
        """Load and verify a pack; raise ``PackError`` (one line) if it cannot serve."""
        start = time.perf_counter()
        loaded = load_pack(Path(pack), device.__version__)
        try:
            model = Model(loaded.model_content, threads=vision.threads)
        except ModelError as exc:
            raise PackError(f"model pack {pack}: {exc}") from None
        problem = _mismatch(loaded, model)
        if problem:
            raise PackError(f"model pack {pack}: {problem}")
        engine = cls(loaded, model, vision, location)
        if vision.self_test:
            failure = engine.self_test()
            if failure:
                raise PackError(f"model pack {pack}: self-test failed: {failure}")
        engine.load_ms = (time.perf_counter() - start) * 1000
        return engine

    def self_test(self) -> str | None:
        """Run the pack's golden images; a description of the first failure, or None."""
        for golden in self.pack.golden:
            try:
                with Image.open(io.BytesIO(golden.content)) as im:
                    im.load()
                    image = to_rgb(im)
            except (OSError, SyntaxError, ValueError) as exc:
                return f"{golden.name}: cannot decode ({exc})"
            scores = self._classify(
                image, full_box(image.size, self.pack.resize, self.model.input_size)
            )
            top = np.argsort(-scores)[: golden.top_k]
            names = {self.pack.labels[i] for i in top} | {self.pack.display_names[i] for i in top}
            if golden.expect_top and not names.intersection(golden.expect_top):
                got = ", ".join(self.pack.display_names[i] for i in top)
                want = " or ".join(golden.expect_top)
                return f"{golden.name}: expected {want} in top {golden.top_k}, got {got}"
        return None

    def _taxon_names(self) -> dict[str, tuple[str | None, str | None]]:
        """Scientific and common name for every taxon key that labels name at their own rank.

        Labels that share a key but not a common name (120 dog breeds are all Canis
        familiaris) give no common name: naming the species after one breed would be wrong.
        """
        names: dict[str, tuple[str | None, str | None]] = {}
        for taxon in self.pack.taxa:
            if taxon.kind != "animal" or not any(taxon.taxonomy):
                continue
            key = taxon.key
            if key_level(key) != (taxon.rank or key_level(key)):
                continue
            sci = taxon.scientific_name or scientific_name_of(key)
            if key not in names:
                names[key] = (sci, taxon.common_name)
            elif names[key][1] != taxon.common_name:
                names[key] = (names[key][0], None)
        return names

    # ----------------------------------------------------------------- classification

    def _classify(self, image: Image.Image, box: Box) -> np.ndarray:
        rgb = crop_resize(image, box, self.model.input_size, pad=self.pack.resize == "pad")
        scores = self.model.run(self.encoder.encode(rgb))
        if self.pack.output == "logits":
            e = np.exp(scores - scores.max())
            scores = e / e.sum()
        return scores

    def _crop(self, name: str, image: Image.Image, box: Box) -> _Crop:
        scores = self._classify(image, box)
        kinds = self.index.kind_scores(scores)
        if self.index.has_blank_class:
            nonblank = 1.0 - kinds["blank"]
        else:
            nonblank = kinds["animal"] + kinds["human"] + kinds["vehicle"]
        return _Crop(name, box, scores, kinds, min(1.0, max(0.0, nonblank)))

    def crops_for(
        self, size: tuple[int, int], motion: MotionResult | None
    ) -> list[tuple[str, Box]]:
        boxes = [("full", full_box(size, self.pack.resize, self.model.input_size))]
        if self.vision.tiles:
            tiles = tile_boxes(
                size, self.vision.tile_fraction, self.vision.tile_overlap, self.vision.max_tiles
            )
            boxes += [(f"tile{i}", b) for i, b in enumerate(tiles)]
        if self.vision.motion_crop and motion is not None and motion.bbox and motion.evidence > 0:
            boxes.append(("motion", region_box(size, motion.bbox)))
        return boxes

    def min_short_side(self) -> int:
        side = min(self.model.input_size)
        return math.ceil(side / self.vision.tile_fraction) if self.vision.tiles else side

    def analyse(
        self,
        image: Image.Image,
        motion: MotionResult | None = None,
        media_id: str | None = None,
        crops: Sequence[tuple[str, Box]] | None = None,
    ) -> _FrameResult:
        """Classify one decoded frame; ``crops`` overrides the crop plan (benchmarks)."""
        start = time.perf_counter()
        plan = crops if crops is not None else self.crops_for(image.size, motion)
        results = [self._crop(name, image, box) for name, box in plan]
        n_tiles = sum(1 for c in results if c.name.startswith("tile"))

        def evidence(crop: _Crop) -> float:
            # k tiles are k looks at one frame: the best of k noisy looks finds "something"
            # in empty scenes far more often than one look does. Bonferroni keeps the
            # family-wise rate at the single-look level: a tile's blank evidence counts k times.
            if crop.name.startswith("tile"):
                return max(0.0, 1.0 - n_tiles * (1.0 - crop.nonblank))
            return crop.nonblank

        best = max(results, key=evidence)
        e_cls = evidence(best)
        e_mot = motion.evidence if motion is not None else 0.0
        # Noisy-OR: either source alone may show that something is there (docs/vision.md).
        blank_score = (1.0 - e_cls) * (1.0 - self.vision.motion_weight * e_mot)
        is_blank = blank_score >= self.thresholds.blank
        row = self._row(best, blank_score, is_blank, media_id, image.size)
        row.details.update(
            crops=[
                {
                    "crop": c.name,
                    "box": list(_norm_box(c.box, image.size)),
                    "nonblank": round(c.nonblank, 4),
                    "evidence": round(evidence(c), 4),
                }
                for c in results
            ],
            motion=None
            if motion is None
            else {"evidence": round(e_mot, 4), "area": round(motion.area, 5), "bbox": motion.bbox},
            ms=round((time.perf_counter() - start) * 1000, 2),
        )
        return _FrameResult(row, blank_score)

    def _row(
        self,
        crop: _Crop,
        blank_score: float,
        is_blank: bool,
        media_id: str | None,
        size: tuple[int, int],
    ) -> ObservationRow:
        top = np.argsort(-crop.scores)[: self.vision.top_k]
        details: dict[str, Any] = {
            "top": [
                {"label": self.pack.display_names[i], "score": round(float(crop.scores[i]), 4)}
                for i in top
            ],
            "kinds": {k: round(v, 4) for k, v in crop.kinds.items() if v > 0},
            "from_crop": crop.name,
            "geofence": {
                "active": self.geofence.active,
                "country": self.geofence.country,
                "admin1": self.geofence.admin1,
            },
        }
        # What every verdict below shares; each says what it found.
        row = partial(
            ObservationRow,
            media_id=media_id,
            count=None,
            blank_score=round(blank_score, 4),
            classified_by=self.classified_by,
            details=details,
        )
        if is_blank:
            return row(
                observation_type="blank",
                scientific_name=None,
                common_name=None,
                taxon_level=None,
                taxonomy=None,
                classification_probability=round(blank_score, 4),
            )
        kind, score = max(
            ((k, crop.kinds.get(k, 0.0)) for k in ("animal", "human", "vehicle")),
            key=lambda kv: kv[1],
        )
        bbox = None if crop.name == "full" else _norm_box(crop.box, size)
        if score < self.thresholds.animal:
            return row(
                observation_type="unknown",
                scientific_name=None,
                common_name=None,
                taxon_level=None,
                taxonomy=None,
                classification_probability=round(1.0 - blank_score, 4),
            )
        if kind == "human":
            return row(
                observation_type="human",
                scientific_name="Homo sapiens",
                common_name="human",
                taxon_level="species",
                taxonomy=HUMAN_TAXONOMY,
                classification_probability=round(score, 4),
                bbox=bbox,
            )
        if kind == "vehicle":
            return row(
                observation_type="vehicle",
                scientific_name=None,
                common_name=None,
                taxon_level=None,
                taxonomy=None,
                classification_probability=round(score, 4),
                bbox=bbox,
            )
        rolled = self.index.rollup(
            crop.scores, self.geofence, self.thresholds.species, self.thresholds.rollup, top_k=5
        )
        details["rollup"] = rolled.path
        if rolled.key is None:
            # No level reached the threshold: as SpeciesNet does, name the kingdom.
            return row(
                observation_type="animal",
                scientific_name="Animalia",
                common_name="animal",
                taxon_level="kingdom",
                taxonomy=None,
                classification_probability=round(score, 4),
                bbox=bbox,
            )
        sci, common = self._names.get(rolled.key, (None, None))
        return row(
            observation_type="animal",
            scientific_name=sci or scientific_name_of(rolled.key),
            common_name=common,
            taxon_level=rolled.level,
            taxonomy=None if rolled.key == "animalia" else rolled.key,
            classification_probability=round(rolled.score, 4),
            bbox=bbox,
        )

    # ----------------------------------------------------------------- public API

    def learn_background(self, lores: np.ndarray | None) -> None:
        """Feed a frame known to show the empty scene (timelapse, or a frame of a blank event)."""
        if lores is not None and lores.ndim == 2 and lores.size:
            self.motion.learn(lores)

    def classify_image(self, path: Path) -> ImageResult:
        """One still image, no burst: classifier and crops only. Raises ``ImageError``."""
        start = time.perf_counter()
        image = load_image(Path(path), self.min_short_side())
        result = self.analyse(image)
        row = result.row
        return ImageResult(
            file=str(path),
            observation_type=row.observation_type,
            scientific_name=row.scientific_name,
            common_name=row.common_name,
            taxon_level=row.taxon_level,
            taxonomy=row.taxonomy,
            confidence=row.classification_probability,
            blank_score=round(result.blank_score, 4),
            is_blank=row.observation_type == "blank",
            ms=round((time.perf_counter() - start) * 1000, 2),
            details=row.details,
        )

    def classify_event(self, frames: Sequence[EventFrame]) -> EventVerdict:
        motions = self.motion.burst([f.lores for f in frames])
        errors: dict[str, str] = {}
        results: list[_FrameResult] = []
        for frame, motion in zip(frames, motions, strict=True):
            image, source, jpeg_error = None, "jpeg", None
            if frame.jpeg_path is not None:
                try:
                    image = load_image(frame.jpeg_path, self.min_short_side())
                except ImageError as exc:
                    jpeg_error = str(exc)
            else:
                jpeg_error = "no stored JPEG"
            if image is None and frame.lores is not None:
                # The luma plane still shows the scene: better grey than unclassified.
                try:
                    image, source = array_to_image(frame.lores), "lores"
                except ImageError as exc:
                    jpeg_error = f"{jpeg_error}; lores unusable ({exc})"
            if image is None:
                errors[frame.media_id] = jpeg_error or "no image"
                continue
            result = self.analyse(image, motion if motion.comparisons else None, frame.media_id)
            result.row.details["source"] = source
            if jpeg_error:
                result.row.details["jpeg_error"] = jpeg_error
            results.append(result)
        return self._verdict(results, motions, errors)

    def _verdict(
        self, results: list[_FrameResult], motions: list[MotionResult], errors: dict[str, str]
    ) -> EventVerdict:
        rows = [r.row for r in results]
        if not results:
            # Nothing could be classified: never call that blank, keep everything.
            moved = max((m.evidence for m in motions), default=0.0)
            score = (
                (1.0 - self.vision.motion_weight * moved)
                if any(m.comparisons for m in motions)
                else 0.0
            )
            event = ObservationRow.unclassified(
                self.classified_by, {"frame_errors": errors}, round(score, 4)
            )
            return EventVerdict([event], score, False, errors)
        blank_score = min(r.blank_score for r in results)
        is_blank = blank_score >= self.thresholds.blank
        if is_blank:
            best = min(results, key=lambda r: r.blank_score).row
        else:
            typed = [
                r.row for r in results if r.row.observation_type in ("animal", "human", "vehicle")
            ]
            pool = typed or [r.row for r in results if r.row.observation_type != "blank"]
            rank = {"animal": 0, "human": 1, "vehicle": 2}
            best = min(
                pool,
                key=lambda row: (
                    rank.get(row.observation_type, 3),
                    -(row.classification_probability or 0.0),
                ),
            )
        # The event row is the best frame's verdict. Its details are a deep copy, so adding the
        # event's own facts never changes the frame row stored beside it.
        event = replace(
            best,
            media_id=None,
            blank_score=round(blank_score, 4),
            details={
                **copy.deepcopy(best.details),
                "from_media": best.media_id,
                "frames": len(results),
            },
        )
        if errors:
            event.details["frame_errors"] = errors
        if is_blank:
            event.classification_probability = round(blank_score, 4)
        return EventVerdict([event, *rows], blank_score, is_blank, errors)


def _mismatch(pack: ModelPack, model: Model) -> str | None:
    if len(pack.labels) != model.num_classes:
        return (
            f"labels file has {len(pack.labels)} labels but the model outputs {model.num_classes}"
        )
    spec = pack.manifest.get("model", {}).get("input") or {}
    want = (spec.get("width"), spec.get("height"))
    if all(want) and tuple(want) != model.input_size:
        got = f"{model.input_size[0]}x{model.input_size[1]}"
        return f"manifest input {want[0]}x{want[1]} but the model takes {got}"
    return None
