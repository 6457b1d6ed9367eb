"""The trainer's input: labelled images, each with the event and deployment it belongs to."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from cloud_stub.training.classes import TrainClass, site_class

__all__ = ["LabelledImage", "LabelledSet"]


@dataclass(frozen=True)
class LabelledImage:
    key: str  # unique per image: the media id, or the file's path relative to the folder
    path: Path
    cls: TrainClass
    event: str  # frames of one event are never on both sides of a split
    deployment: str


def _one_class_per_name(images: list[LabelledImage]) -> list[LabelledImage]:
    """Labels with one name are one class, even when reviewers wrote its common name or
    taxonomy differently: the variant most photos carry speaks for all (ties: the one with
    the fullest taxonomy, then the first in order)."""
    variants: dict[str, Counter[TrainClass]] = {}
    for image in images:
        variants.setdefault(image.cls.name, Counter())[image.cls] += 1

    def weight(item: tuple[TrainClass, int]) -> tuple[int, int, str, str]:
        cls, n = item
        known = sum(bool(f) for f in cls.taxonomy.split(";"))
        return (-n, -known, cls.display, cls.taxonomy)

    chosen = {name: min(found.items(), key=weight)[0] for name, found in variants.items()}
    return [replace(i, cls=chosen[i.cls.name]) for i in images]


@dataclass
class LabelledSet:
    images: list[LabelledImage]
    source: str  # where the labels came from, for the report and the pack's provenance
    name_hint: str  # the default head name is head-<name_hint>
    event_rule: str  # how frames were grouped into events
    # Why images or labels were left out, and how many of each (shown in the report).
    left_out: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.images = _one_class_per_name(self.images)

    @property
    def deployments(self) -> list[str]:
        return sorted({i.deployment for i in self.images})

    def classes(self) -> list[TrainClass]:
        return sorted({i.cls for i in self.images}, key=lambda c: (c.kind != "blank", c.name))

    def as_site_head(self) -> LabelledSet:
        """The same images with a site head's classes (blank, human, vehicle, animal)."""
        return replace(self, images=[replace(i, cls=site_class(i.cls)) for i in self.images])
