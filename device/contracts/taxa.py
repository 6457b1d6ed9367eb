"""Taxa as model packs name them, following the SpeciesNet conventions.

Taxonomy strings have five lowercase fields, ``class;order;family;genus;species``; an empty
field means unknown at that level, and ``animalia`` stands for the kingdom. The device rolls
predictions up these keys (device/vision/taxa.py); the cloud's review page offers them as
choices. Both read them with these helpers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard

from device.contracts.protocol import TaxonLevel

__all__ = [
    "HUMAN_TAXONOMY",
    "KINDS",
    "LEVELS",
    "LabelKind",
    "Taxon",
    "ancestor_key",
    "guess_kind",
    "key_level",
    "scientific_name_of",
    "split_taxonomy",
]

# What a pack's label shows. "object" (a thing that is none of the others) is the pack format's
# own word, not an observation type: no observation row ever carries it.
LabelKind = Literal["animal", "human", "vehicle", "object", "blank"]

LEVELS: tuple[TaxonLevel, ...] = ("species", "genus", "family", "order", "class", "kingdom")
_FIELDS: tuple[TaxonLevel, ...] = ("class", "order", "family", "genus", "species")
KINDS: tuple[LabelKind, ...] = ("animal", "human", "vehicle", "object", "blank")

# The taxonomy key of people: the engine's human verdicts, a reviewer's "human", a head's
# human class.
HUMAN_TAXONOMY = "mammalia;primates;hominidae;homo;sapiens"

_HUMAN_WORDS = {"human", "humans", "person", "people", "homo sapiens"}
_VEHICLE_WORDS = {"vehicle", "vehicles", "car", "truck", "motorcycle", "bicycle"}
_BLANK_WORDS = {"blank", "empty", "none", "background", "nothing"}


def _is_kind(text: str) -> TypeGuard[LabelKind]:
    return text in KINDS


def guess_kind(name: str) -> LabelKind:
    """The kind of a label known only by its name (AutoML exports, packs without taxonomy)."""
    text = name.strip().lower()
    if text in _BLANK_WORDS:
        return "blank"
    if text in _HUMAN_WORDS:
        return "human"
    if text in _VEHICLE_WORDS:
        return "vehicle"
    return "animal"


def split_taxonomy(text: str | None) -> tuple[str, str, str, str, str]:
    parts = [p.strip().lower() for p in (text or "").split(";")][:5]
    parts += [""] * (5 - len(parts))
    return (parts[0], parts[1], parts[2], parts[3], parts[4])


def ancestor_key(fields: Sequence[str], level: TaxonLevel) -> str | None:
    """The taxonomy string of the ancestor at ``level``, or None when that level is unknown."""
    if level == "kingdom":
        return "animalia"
    depth = _FIELDS.index(level) + 1
    if not fields[depth - 1]:
        return None
    return ";".join(list(fields[:depth]) + [""] * (5 - depth))


def key_level(key: str) -> TaxonLevel:
    if key == "animalia":
        return "kingdom"
    fields = split_taxonomy(key)
    for level in reversed(_FIELDS):
        if fields[_FIELDS.index(level)]:
            return level
    return "kingdom"


def scientific_name_of(key: str) -> str:
    """Latin name of a taxon given by its key: 'Panthera pardus', 'Felidae', 'Animalia'."""
    if key == "animalia":
        return "Animalia"
    fields = split_taxonomy(key)
    if fields[4]:
        return f"{fields[3].capitalize()} {fields[4]}".strip()
    for value in reversed(fields[:4]):
        if value:
            return value.capitalize()
    return "Animalia"


@dataclass(frozen=True)
class Taxon:
    label: str
    kind: LabelKind
    taxonomy: tuple[str, str, str, str, str] = ("", "", "", "", "")
    scientific_name: str | None = None
    common_name: str | None = None
    # The pack's own word for the label's rank: usually a TaxonLevel, but packs also say
    # "phylum" or nothing, so it is kept as written.
    rank: str | None = None

    @classmethod
    def from_entry(cls, label: str, entry: Mapping[str, Any]) -> Taxon:
        """One entry of a pack's taxonomy.json; ValueError for a kind the format lacks."""
        kind = str(entry.get("kind", "animal"))
        if not _is_kind(kind):
            raise ValueError(f"taxonomy: label {label!r} has unknown kind {kind!r}")
        return cls(
            label=label,
            kind=kind,
            taxonomy=split_taxonomy(entry.get("taxonomy")),
            scientific_name=entry.get("scientific_name") or None,
            common_name=entry.get("common_name") or None,
            rank=entry.get("rank") or None,
        )

    @classmethod
    def from_speciesnet(cls, label: str) -> Taxon:
        parts = label.split(";")
        fields = split_taxonomy(";".join(parts[1:6]))
        common = parts[6].strip() if len(parts) > 6 else ""
        kind: LabelKind
        if ";".join(fields) == HUMAN_TAXONOMY:
            kind = "human"
        elif not any(fields):
            kind = guess_kind(common)
            kind = "object" if kind == "animal" else kind
        else:
            kind = "animal"
        key = ";".join(fields)
        return cls(
            label=label,
            kind=kind,
            taxonomy=fields,
            scientific_name=scientific_name_of(key) if any(fields) else None,
            common_name=common or None,
            rank=key_level(key) if any(fields) else None,
        )

    @property
    def key(self) -> str:
        return ";".join(self.taxonomy)
