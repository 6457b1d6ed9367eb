"""Geofencing and taxonomy rollup, following the SpeciesNet conventions.

Taxa and their five-field taxonomy strings are the pack format's (``device.contracts.taxa``,
re-exported here for the vision room). Geofence rules (SpeciesNet's JSON format) are keyed by
such strings. A prediction is given at the most specific level that is both allowed at the trap's
location and confident enough: the scores of the top-k animal labels are summed per ancestor,
level by level, and the first level whose best allowed ancestor reaches the threshold wins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from device.contracts.protocol import TaxonLevel
from device.contracts.taxa import (
    KINDS,
    LEVELS,
    LabelKind,
    Taxon,
    ancestor_key,
    guess_kind,
    key_level,
    scientific_name_of,
    split_taxonomy,
)

__all__ = [
    "KINDS",
    "LEVELS",
    "Geofence",
    "LabelKind",
    "Rollup",
    "Taxon",
    "TaxonIndex",
    "ancestor_key",
    "guess_kind",
    "key_level",
    "scientific_name_of",
    "split_taxonomy",
]


def _rule_allows(rule: Mapping[str, Any], country: str, admin1: str | None) -> bool:
    allow = rule.get("allow")
    if isinstance(allow, dict):
        if country not in allow:
            return False
        regions = allow[country] or []
        if regions and admin1 is not None and admin1 not in regions:
            return False
    block = rule.get("block")
    if isinstance(block, dict) and country in block:
        regions = block[country] or []
        if not regions or (admin1 is not None and admin1 in regions):
            return False
    return True


@dataclass
class Geofence:
    """Which taxa may be reported at one location.

    Besides explicit rules, a genus/family/... whose every species in the model is fenced out
    is fenced out too: otherwise an African elephant seen in India would roll up to the genus
    Loxodonta, which names the same animal.
    """

    rules: Mapping[str, Any]
    country: str | None
    admin1: str | None
    species_keys: Sequence[str] = ()
    _cache: dict[str, bool] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.country is not None and bool(self.rules)

    def _explicit(self, key: str) -> bool:
        fields = split_taxonomy(key)
        levels: tuple[TaxonLevel, ...] = ("class", "order", "family", "genus", "species")
        for level in levels:
            anc = ancestor_key(fields, level)
            if anc is None:
                break
            rule = self.rules.get(anc)
            if isinstance(rule, dict) and not _rule_allows(rule, self.country or "", self.admin1):
                return False
        return True

    def allows(self, key: str) -> bool:
        if not self.active:
            return True
        if key in self._cache:
            return self._cache[key]
        result = self._explicit(key) if key != "animalia" else True
        if result and key_level(key) not in ("species", "kingdom"):
            prefix = key.rstrip(";")
            below = [s for s in self.species_keys if s.startswith(prefix + ";")]
            if below:
                result = any(self._explicit(s) for s in below)
        self._cache[key] = result
        return result


@dataclass(frozen=True)
class Rollup:
    key: str | None  # None: not even the kingdom reached the threshold
    level: TaxonLevel | None
    score: float
    path: list[dict[str, Any]]


class TaxonIndex:
    """Precomputed per-label facts so a rollup per frame costs microseconds."""

    def __init__(self, taxa: Sequence[Taxon]) -> None:
        self.taxa = list(taxa)
        kinds = np.array([t.kind for t in taxa])
        self.masks: dict[LabelKind, np.ndarray] = {kind: kinds == kind for kind in KINDS}
        self.animal_idx = np.flatnonzero(self.masks["animal"])
        self.ancestors: list[dict[TaxonLevel, str | None]] = [
            {level: ancestor_key(t.taxonomy, level) for level in LEVELS}
            if t.kind == "animal"
            else {}
            for t in taxa
        ]
        self.species_keys = sorted({t.key for t in taxa if t.kind == "animal" and t.taxonomy[4]})
        self.has_blank_class = bool(self.masks["blank"].any())

    def kind_scores(self, scores: np.ndarray) -> dict[str, float]:
        return {kind: float(scores[mask].sum()) for kind, mask in self.masks.items()}

    def rollup(
        self,
        scores: np.ndarray,
        geofence: Geofence,
        species_threshold: float,
        rollup_threshold: float,
        top_k: int = 5,
    ) -> Rollup:
        if self.animal_idx.size == 0:
            return Rollup(None, None, 0.0, [])
        animal_scores = scores[self.animal_idx]
        k = min(top_k, animal_scores.size)
        top = self.animal_idx[np.argpartition(-animal_scores, k - 1)[:k]]
        path: list[dict[str, Any]] = []
        for level in LEVELS:
            sums: dict[str, float] = {}
            for i in top:
                key = self.ancestors[i][level]
                if key is not None and scores[i] > 0:
                    sums[key] = sums.get(key, 0.0) + float(scores[i])
            threshold = species_threshold if level == "species" else rollup_threshold
            for key, total in sorted(sums.items(), key=lambda kv: -kv[1]):
                if not geofence.allows(key):
                    path.append(
                        {"level": level, "taxon": key, "score": round(total, 4), "geofenced": True}
                    )
                    continue
                path.append({"level": level, "taxon": key, "score": round(total, 4)})
                if total >= threshold:
                    return Rollup(key, level, total, path)
                break
        return Rollup(None, None, 0.0, path)
