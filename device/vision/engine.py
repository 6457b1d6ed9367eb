"""The vision engine: a loaded pack that turns an event's frames into observation rows.

Per frame: the full frame (as the manifest's resize mode frames it), square tiles that cover
the edges, and a crop around the largest motion blob are classified, all cut from the frame
without the camera's info bar (``info_bar.py``); together with motion evidence and the site
memory's novelty evidence (``site_memory.py``, from the embeddings of the same invokes) they
give the frame's ``blank_score`` (docs/vision.md). The event is blank only when every frame
is. Species come from the most confident crop, rolled up through the taxonomy and
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
from device.contracts.taxa import HUMAN_TAXONOMY
from device.vision import info_bar
from device.vision.calibration import ThresholdInForce, operating_point_of
from device.vision.info_bar import NO_BAR, InfoBar
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
from device.vision.runtime import Model
from device.vision.site_memory import (
    CONFIDENT_BLANK,
    NOT_JUDGED,
    FrameEmbedding,
    Novelty,
    SiteMemory,
    project,
)
from device.vision.taxa import Geofence, LabelKind, TaxonIndex, key_level, scientific_name_of

if TYPE_CHECKING:
    from device.config import LocationSection, VisionSection


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
    classified_by: str  # "name@version"; a head: "backbone@version+head@version"
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
    # media_id -> the frame as the site memory sees it (frames decoded from their JPEG, by a
    # model with an embedding); what the worker feeds the memory with.
    embeddings: dict[str, FrameEmbedding] = field(default_factory=dict)


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
    embedding: np.ndarray | None  # the model's pooled features for this crop, if it has them


@dataclass
class _FrameResult:
    row: ObservationRow
    blank_score: float
    embedding: FrameEmbedding | None = None


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

    def use_site_memory(self, memory: SiteMemory | None) -> None: ...

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
        # The blank threshold comes from a calibration table when there is one (chosen by
        # vision.target_recall), else from the manifest; where it came from is kept so that
        # status and eval can say it (device/vision/calibration.py has the precedence).
        self.operating_point: ThresholdInForce = operating_point_of(pack, vision)
        self.thresholds = Thresholds(
            species=vision.species_threshold
            if vision.species_threshold is not None
            else t["species"],
            rollup=vision.rollup_threshold if vision.rollup_threshold is not None else t["rollup"],
            blank=self.operating_point.value,
            animal=vision.animal_threshold if vision.animal_threshold is not None else t["animal"],
        )
        self.motion = MotionModel(
            sigmas=vision.motion_sigma,
            min_area=vision.motion_min_area,
            full_area=vision.motion_full_area,
            alpha=vision.background_alpha,
        )
        self._names = self._taxon_names()
        # Masks of the labels that are evidence of presence, fixed per pack (kind_scores
        # sums every kind; the blank score needs only these).
        presence: tuple[LabelKind, ...] = (
            ("blank",) if self.index.has_blank_class else ("animal", "human", "vehicle")
        )
        self._presence_mask = np.zeros(len(pack.labels), bool)
        for kind in presence:
            self._presence_mask |= self.index.masks[kind]
        self._fixed_bar = info_bar.configured(
            vision.info_bar, vision.info_bar_top, vision.info_bar_bottom
        )
        # The embedding space: a memory of one model's vectors means nothing to another. It
        # is named by the model file that makes them (for a head, its backbone's), not by
        # classified_by: a head installed over the same backbone, or a new version of a pack
        # with the same model, keeps the deployment's site memory; a new model starts it over.
        size = model.embedding_size
        self.embedding_space = None if size is None else f"sha256:{pack.model_sha256[:16]}:{size}"
        # A fresh memory held in RAM (camtrap eval, classify); the agent's worker hands the
        # engine it serves the deployment's persistent one (``use_site_memory``).
        self.site_memory: SiteMemory | None = (
            SiteMemory(vision.site_memory_size) if vision.site_memory and size else None
        )
        self.load_ms = 0.0

    # ----------------------------------------------------------------- loading

    @classmethod
    def load(
        cls,
        pack: Path,
        vision: VisionSection,
        location: LocationSection,
        backbones: Sequence[Path] = (),
    ) -> VisionEngine:
        """Load and verify a pack; raise ``PackError`` (one line) if it cannot serve. A head's
        backbone is looked for in ``backbones``, then the configured ``vision.pack``, then
        beside the head and in the shipped default pack (``load_pack``)."""
        start = time.perf_counter()
        loaded = load_pack(
            Path(pack), device.__version__, backbones=[*backbones, Path(vision.pack)]
        )
        if loaded.kind == "backbone":
            raise PackError(
                f"model pack {pack}: a backbone pack gives no verdict alone: install a head over it"
            )
        model = Model.for_pack(loaded, threads=vision.threads)  # PackError naming the pack
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
            scores, _ = self._classify(
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

    def _classify(self, image: Image.Image, box: Box) -> tuple[np.ndarray, np.ndarray | None]:
        """Scores and embedding of one crop, from one invoke."""
        rgb = crop_resize(image, box, self.model.input_size, pad=self.pack.resize == "pad")
        scores, embedding = self.model.run_with_embedding(self.encoder.encode(rgb))
        if self.pack.output == "logits":
            e = np.exp(scores - scores.max())
            scores = e / e.sum()
        return scores, embedding

    def _crop(self, name: str, image: Image.Image, box: Box) -> _Crop:
        scores, embedding = self._classify(image, box)
        summed = float(scores[self._presence_mask].sum())
        nonblank = 1.0 - summed if self.index.has_blank_class else summed
        # The per-kind sums are only needed for the crop that decides (see _row).
        return _Crop(name, box, scores, {}, min(1.0, max(0.0, nonblank)), embedding)

    def crops_for(
        self, size: tuple[int, int], motion: MotionResult | None, bar: InfoBar = NO_BAR
    ) -> list[tuple[str, Box]]:
        """The crop plan of a frame of ``size``, cut from it without the info bar ``bar``;
        ``motion``'s box is one of the scene below/above the bar."""
        left, top, right, bottom = bar.scene_box(size)
        scene = (right - left, bottom - top)

        def moved(box: Box) -> Box:
            return (box[0] + left, box[1] + top, box[2] + left, box[3] + top)

        boxes = [("full", moved(full_box(scene, self.pack.resize, self.model.input_size)))]
        if self.vision.tiles:
            tiles = tile_boxes(
                scene, self.vision.tile_fraction, self.vision.tile_overlap, self.vision.max_tiles
            )
            boxes += [(f"tile{i}", moved(b)) for i, b in enumerate(tiles)]
        if self.vision.motion_crop and motion is not None and motion.bbox and motion.evidence > 0:
            boxes.append(("motion", moved(region_box(scene, motion.bbox))))
        return boxes

    def use_site_memory(self, memory: SiteMemory | None) -> None:
        """Judge novelty against ``memory`` (the worker's, persisted per deployment) from now on."""
        self.site_memory = memory if self.embedding_space is not None else None

    def _frame_embedding(self, crops: Sequence[_Crop]) -> FrameEmbedding | None:
        """The frame at its fixed crop positions (the full frame and the tiles, not the
        motion crop, whose place changes), for the site memory."""
        fixed = [c for c in crops if c.name == "full" or c.name.startswith("tile")]
        if self.embedding_space is None or not fixed or any(c.embedding is None for c in fixed):
            return None
        tiles = [c.box for c in fixed if c.name != "full"]
        grid = f"{len({b[0] for b in tiles})}x{len({b[1] for b in tiles})}" if tiles else "0x0"
        layout = "+".join(c.name for c in fixed if not c.name.startswith("tile")) + f"|{grid}"
        vectors = project(np.stack([c.embedding for c in fixed if c.embedding is not None]))
        return FrameEmbedding(self.embedding_space, f"{layout}|{len(fixed)}", vectors)

    def min_short_side(self) -> int:
        side = min(self.model.input_size)
        return math.ceil(side / self.vision.tile_fraction) if self.vision.tiles else side

    def analyse(
        self,
        image: Image.Image,
        motion: MotionResult | None = None,
        media_id: str | None = None,
        crops: Sequence[tuple[str, Box]] | None = None,
        bar: InfoBar = NO_BAR,
        novelty: bool = True,
    ) -> _FrameResult:
        """Classify one decoded frame; ``crops`` overrides the crop plan (benchmarks).

        ``novelty`` False: the frame is not the camera's view as the site memory knows it
        (e.g. a grey lores stand-in), so the memory is neither asked nor fed.
        """
        start = time.perf_counter()
        plan = crops if crops is not None else self.crops_for(image.size, motion, bar)
        results = [self._crop(name, image, box) for name, box in plan]
        n_tiles = sum(1 for c in results if c.name.startswith("tile"))

        def evidence(crop: _Crop) -> float:
            # k tiles are k looks at one frame: the best of k noisy looks finds "something"
            # in empty scenes far more often than one look does. Bonferroni keeps the
            # family-wise rate at the single-look level: a tile's blank evidence counts k times.
            if crop.name.startswith("tile"):
                return max(0.0, 1.0 - n_tiles * (1.0 - crop.nonblank))
            return crop.nonblank

        looks = [evidence(c) for c in results]
        best_at = max(range(len(results)), key=looks.__getitem__)
        best, e_cls = results[best_at], looks[best_at]
        e_mot = motion.evidence if motion is not None else 0.0
        embedding = self._frame_embedding(results) if novelty else None
        memory = self.site_memory
        judged = memory.novelty(embedding) if memory is not None and embedding else NOT_JUDGED
        # Noisy-OR: each source alone may show that something is there (docs/vision.md).
        # Novelty only ever multiplies in a factor <= 1: it can keep a frame, never drop one.
        blank_score = (
            (1.0 - e_cls) * (1.0 - self.vision.motion_weight * e_mot) * (1.0 - judged.evidence)
        )
        is_blank = blank_score >= self.thresholds.blank
        row = self._row(best, blank_score, is_blank, media_id, image.size)
        row.details.update(
            crops=[
                {
                    "crop": c.name,
                    "box": list(_norm_box(c.box, image.size)),
                    "nonblank": round(c.nonblank, 4),
                    "evidence": round(look, 4),
                }
                for c, look in zip(results, looks, strict=True)
            ],
            motion=None
            if motion is None
            else {
                "evidence": round(e_mot, 4),
                "area": round(motion.area, 5),
                "bbox": bar.to_frame(motion.bbox) if bar.present and motion.bbox else motion.bbox,
            },
            novelty=None if embedding is None else self._describe(judged, results),
            ms=round((time.perf_counter() - start) * 1000, 2),
        )
        if bar.present:
            row.details["info_bar"] = bar.describe()
        if embedding is not None:
            embedding = replace(embedding, blank_score=blank_score)
        return _FrameResult(row, blank_score, embedding)

    @staticmethod
    def _describe(judged: Novelty, crops: Sequence[_Crop]) -> dict[str, Any]:
        names = [c.name for c in crops if c.name == "full" or c.name.startswith("tile")]
        return judged.describe(names)

    def _row(
        self,
        crop: _Crop,
        blank_score: float,
        is_blank: bool,
        media_id: str | None,
        size: tuple[int, int],
    ) -> ObservationRow:
        if not crop.kinds:
            crop.kinds = self.index.kind_scores(crop.scores)
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
        bar = self._fixed_bar if self._fixed_bar is not None else info_bar.detect_in_image(image)
        result = self.analyse(image, bar=bar)
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

    def event_bar(self, frames: Sequence[EventFrame]) -> InfoBar:
        """The info bar of an event's frames: the configured band, else what the auto rule
        finds on their lores planes (the widest at each edge, so the planes keep one shape)."""
        if self._fixed_bar is not None:
            return self._fixed_bar
        planes = [f.lores for f in frames if f.lores is not None and f.lores.ndim == 2]
        return info_bar.union([info_bar.detect(p) for p in planes])

    def classify_event(self, frames: Sequence[EventFrame]) -> EventVerdict:
        bar = self.event_bar(frames)
        motions = self.motion.burst([None if f.lores is None else bar.cut(f.lores) for f in frames])
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
            frame_bar = bar
            if self._fixed_bar is None and source == "jpeg":
                # The decoded photo shows a strip more sharply than its lores plane; the crops
                # of this frame leave out whatever either finds (motion keeps the event's).
                frame_bar = info_bar.union([bar, info_bar.detect_in_image(image)])
            result = self.analyse(
                image,
                motion if motion.comparisons else None,
                frame.media_id,
                bar=frame_bar,
                novelty=source == "jpeg",  # a grey stand-in is not the view the memory knows
            )
            result.row.details["source"] = source
            if jpeg_error:
                result.row.details["jpeg_error"] = jpeg_error
            results.append(result)
        verdict = self._verdict(results, motions, errors)
        verdict.embeddings = {
            r.row.media_id: r.embedding
            for r in results
            if r.embedding is not None and r.row.media_id is not None
        }
        return verdict

    def remember_empty_scene(
        self, event_id: str, verdict: EventVerdict, capture_method: str
    ) -> int:
        """Feed this engine's site memory as the agent's worker feeds the deployment's (for
        ``camtrap eval`` and other runs without a worker); returns how many frames it took."""
        if self.site_memory is None:
            return 0
        return remember_empty_scene(self.site_memory, event_id, verdict, capture_method)

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


def shows_empty_scene(verdict: EventVerdict, capture_method: str) -> bool:
    """Blank events, and timelapse frames with nothing named in them, teach the background
    model what the empty scene looks like (the worker's rule, and ``camtrap eval``'s)."""
    if verdict.is_blank:
        return True
    top = verdict.observations[0].observation_type
    return capture_method == "timeLapse" and top not in ("animal", "human", "vehicle")


def remember_empty_scene(
    memory: SiteMemory, event_id: str, verdict: EventVerdict, capture_method: str
) -> int:
    """The frames of a classified event that show the empty scene go to ``memory``, by its
    rule (site_memory.py: timelapse frames with nothing named, confident blanks)."""
    top = verdict.observations[0].observation_type if verdict.observations else "unclassified"
    return memory.learn_from_event(
        event_id,
        verdict.embeddings,
        timelapse=capture_method == "timeLapse",
        # Every frame confidently blank, whatever threshold is in force: what the memory
        # holds must not change when a calibration does (the default one calls nothing blank).
        blank_event=verdict.blank_score >= CONFIDENT_BLANK,
        named=top in ("animal", "human", "vehicle"),
    )


def _mismatch(pack: ModelPack, model: Model) -> str | None:
    if len(pack.labels) != model.num_classes:
        return (
            f"labels file has {len(pack.labels)} labels but the model outputs {model.num_classes}"
        )
    spec = pack.model_section.get("input") or {}
    want = (spec.get("width"), spec.get("height"))
    if all(want) and tuple(want) != model.input_size:
        got = f"{model.input_size[0]}x{model.input_size[1]}"
        return f"manifest input {want[0]}x{want[1]} but the model takes {got}"
    return None
