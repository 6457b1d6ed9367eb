"""The unit the hand-off pipeline moves around: one labelled image."""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from typing import Any


class HandoffError(Exception):
    """A hand-off that cannot run; the message says why and what to do."""


@dataclass(frozen=True)
class Record:
    image_id: str
    file_name: str  # path relative to the dataset root; also the layout under the destination
    source: str  # URL, gs:// URI or local path the image is read from
    category: str  # the dataset's own name
    origin: str  # coco | stub

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        return cls(**data)


_NOT_LABEL = re.compile(r"[^a-z0-9]+")


def automl_label(category: str) -> str:
    """A Vertex AI label: letters, digits and underscores, starting with a letter, <= 32 chars."""
    label = _NOT_LABEL.sub("_", category.strip().lower()).strip("_")
    if not label or not label[0].isalpha():
        label = "c_" + label
    return label[:32].rstrip("_")


def rank(seed: int, source: str) -> str:
    """A seeded pseudo-random order that does not depend on the order elements arrive in."""
    return hashlib.sha256(f"{seed}\x00{source}".encode()).hexdigest()
