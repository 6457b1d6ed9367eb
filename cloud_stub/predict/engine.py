"""The endpoint's classifier: the trap's ``VisionEngine`` over the trap's packs, heads included,
so the endpoint's answers are the trap's answers (``camtrap classify``).

This module is the predict package's one door into ``device`` (pyproject's import contracts).
"""

from __future__ import annotations

import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from device.config import LocationSection, VisionSection
from device.vision.engine import ImageResult, VisionEngine
from device.vision.pack import PackError
from device.vision.preprocess import ImageError

__all__ = ["MAX_PREDICTIONS", "Classified", "EngineError", "PredictEngine"]

# The most labels one prediction lists: the engine's own ceiling on its top list
# (VisionSection.top_k); Vertex documents that a higher maxPredictions may return fewer.
MAX_PREDICTIONS = 20
# Geofences asked for by requests: one light engine each over the same interpreter. ISO 3166
# has fewer codes than this, so the cache never evicts a real country.
MAX_COUNTRIES = 300


class EngineError(Exception):
    """The pack cannot serve (one line naming it)."""


@dataclass(frozen=True)
class Classified:
    result: ImageResult
    ids: list[int]  # index of each entry of result.details["top"] in the pack's labels


class PredictEngine:
    """One pack loaded once per process; classification serialised by a lock because the
    TFLite interpreter is not thread-safe."""

    def __init__(self, pack: Path) -> None:
        try:
            self._base = VisionEngine.load(pack, self._vision(pack), LocationSection())
        except PackError as exc:
            raise EngineError(str(exc)) from exc
        self._lock = threading.Lock()
        self._by_country: dict[str | None, VisionEngine] = {None: self._base}
        self._label_ids: dict[str, list[int]] = {}
        for i, name in enumerate(self._base.pack.display_names):
            self._label_ids.setdefault(name, []).append(i)
        self._scratch = tempfile.TemporaryDirectory(prefix="camtrap-predict-")

    @staticmethod
    def _vision(pack: Path) -> VisionSection:
        # The trap's defaults, a top list long enough for any maxPredictions, and this pack
        # as the place a head's backbone is looked for.
        return VisionSection(pack=pack, top_k=MAX_PREDICTIONS)

    @property
    def deployed_model_id(self) -> str:
        return str(self._base.classified_by)

    @property
    def has_geofence(self) -> bool:
        return bool(self._base.pack.geofence)

    def close(self) -> None:
        self._scratch.cleanup()

    def _engine_for(self, country: str | None) -> VisionEngine:
        """The engine geofenced to ``country`` (ISO 3166-1 alpha-3), built over the loaded
        model: the geofence is fixed when an engine is made, as on the trap."""
        engine = self._by_country.get(country)
        if engine is None:
            try:
                location = LocationSection(country=country)
            except ValidationError as exc:
                first = exc.errors(include_url=False)[0]
                message = str(first["msg"]).removeprefix("Value error, ")
                raise ValueError(f"parameters.country {country!r}: {message}") from exc
            base = self._base
            engine = VisionEngine(base.pack, base.model, base.vision, location)
            if len(self._by_country) < MAX_COUNTRIES:
                self._by_country[country] = engine
        return engine

    def check_country(self, country: str | None) -> None:
        """``ValueError`` naming ``parameters.country`` when the trap would refuse it."""
        with self._lock:
            self._engine_for(country)

    def classify(self, jpeg: bytes, country: str | None) -> Classified:
        """Classify one JPEG as ``camtrap classify`` does. ``ImageError`` (the reason, without a
        file name) when it cannot be decoded; ``ValueError`` for a country the trap would
        refuse."""
        with self._lock:
            engine = self._engine_for(country)
            # The engine reads images from files (the trap's stored JPEGs): one scratch file,
            # reused under the lock, keeps its decode path the trap's.
            path = Path(self._scratch.name) / "instance.jpg"
            path.write_bytes(jpeg)
            try:
                result = engine.classify_image(path)
            except ImageError as exc:
                raise ImageError(str(exc).removeprefix(f"{path}: ")) from exc
            finally:
                path.unlink(missing_ok=True)
        return Classified(result, self._ids(result.details.get("top", [])))

    def _ids(self, top: list[dict[str, Any]]) -> list[int]:
        # The engine's top list names labels by display name; a name two labels share
        # (ImageNet's two "crane"s) takes their indices in order.
        used: set[int] = set()
        ids = []
        for entry in top:
            candidates = self._label_ids.get(entry["label"], [])
            index = next((i for i in candidates if i not in used), -1)
            used.add(index)
            ids.append(index)
        return ids
