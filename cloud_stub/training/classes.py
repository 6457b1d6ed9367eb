"""What a reviewed label becomes in a head: a class with a kind and a SpeciesNet label line.

A label names what an image shows. ``blank``/``empty``, ``human``/``person`` and ``vehicle``
(and their usual synonyms, ``device.contracts.taxa.guess_kind``) are those kinds; a label the
hand-off would drop as machine-unusable (``unknown``, ``unidentified``, ...,
``cloud_stub.handoff.categories``) trains nothing; anything else is an animal named by it.

A class's SpeciesNet line is ``uuid;class;order;family;genus;species;common name``. The uuid
is derived from the class's name (uuid5), so a retrained head gives a species the same id as
the head before it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from cloud_stub.handoff.categories import DEFAULT_DROP, DropList
from device.contracts.taxa import HUMAN_TAXONOMY, guess_kind, split_taxonomy

__all__ = [
    "BLANK",
    "DROPS",
    "HUMAN",
    "NOT_BLANK",
    "VEHICLE",
    "TrainClass",
    "animal",
    "class_of_label",
    "site_class",
]

# Fixed forever: changing it would give every class of every future head a new id.
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "camtrap:head-class")
DROPS = DropList.of(DEFAULT_DROP)


@dataclass(frozen=True)
class TrainClass:
    """One class of a head. ``name`` identifies it (two labels with one name are one class);
    ``display`` is what people read; ``taxonomy`` is ``class;order;family;genus;species``
    (empty fields where unknown)."""

    name: str
    kind: str  # blank | animal | human | vehicle
    display: str
    taxonomy: str = ";;;;"

    @property
    def not_blank(self) -> bool:
        return self.kind != "blank"

    @property
    def label_id(self) -> str:
        return str(uuid.uuid5(_NAMESPACE, self.name))

    def label_line(self) -> str:
        """The SpeciesNet labels line (a ``;`` inside a name would shift the fields)."""
        fields = ";".join(split_taxonomy(self.taxonomy))
        return f"{self.label_id};{fields};{self.display.replace(';', ',')}"


BLANK = TrainClass("blank", "blank", "blank")
HUMAN = TrainClass("human", "human", "human", HUMAN_TAXONOMY)
VEHICLE = TrainClass("vehicle", "vehicle", "vehicle")
# A site head's one class for every animal (docs/learning.md, "Site heads").
NOT_BLANK = TrainClass("animal", "animal", "animal")
_BY_KIND = {"blank": BLANK, "human": HUMAN, "vehicle": VEHICLE}


def animal(name: str, display: str | None = None, taxonomy: str | None = None) -> TrainClass:
    """An animal class; its identity is its name, case and spaces aside."""
    key = " ".join(name.split()).lower()
    return TrainClass(key, "animal", (display or name).strip(), taxonomy or ";;;;")


def class_of_label(label: str, taxonomy: str | None = None) -> TrainClass | None:
    """The class a free-text label (a labels.csv or AutoML CSV row) names, with the
    animal's taxonomy when the row gives one; None when the label is machine-unusable."""
    text = label.strip()
    kind = guess_kind(text.replace("_", " "))
    if kind in _BY_KIND:
        return _BY_KIND[kind]
    if not text or DROPS.drops(text) or DROPS.drops(text.replace("_", " ")):
        return None
    return animal(text, taxonomy=taxonomy)


def site_class(cls: TrainClass) -> TrainClass:
    """A site head's classes: blank, human and vehicle stay; every animal is one class."""
    return NOT_BLANK if cls.kind == "animal" else cls
