"""Blank scores as the trap computes them from one crop's class probabilities, and per event.

A frame's blank score from the full crop (device/vision/engine.py): with a class of kind
``blank``, its probability; without one (an ImageNet pack), one minus the summed probability
of the animal, human and vehicle classes (the "ImageNet-sum"). An event is blank only when
every frame is, so its score is the lowest of its frames'.

On the trap, tiles, the motion crop, motion and the site memory can only lower a frame's
blank score below its full crop's (each is one more look that may find something), so a
threshold calibrated here keeps at least the recall it was calibrated for there.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cloud_stub.training.labelled import LabelledImage
from device.contracts.recall import Scored

__all__ = ["PRESENCE_KINDS", "blank_scores", "event_items"]

PRESENCE_KINDS = ("animal", "human", "vehicle")


def blank_scores(probabilities: np.ndarray, kinds: Sequence[str]) -> np.ndarray:
    """``[n]`` blank scores for ``[n, classes]`` probabilities whose classes have ``kinds``."""
    kind = np.asarray(kinds)
    if (kind == "blank").any():
        score = probabilities[:, kind == "blank"].sum(axis=1)
    else:
        score = 1.0 - probabilities[:, np.isin(kind, PRESENCE_KINDS)].sum(axis=1)
    return np.clip(score, 0.0, 1.0)


def event_items(scores: np.ndarray, images: Sequence[LabelledImage]) -> list[Scored]:
    """One item per event: the lowest blank score of its frames; not blank when any frame
    shows something (an animal crossing is not blank for the frames it has left)."""
    lowest: dict[str, float] = {}
    present: dict[str, bool] = {}
    for score, image in zip(scores, images, strict=True):
        lowest[image.event] = min(float(score), lowest.get(image.event, 1.0))
        present[image.event] = present.get(image.event, False) or image.cls.not_blank
    return [Scored(lowest[e], present[e]) for e in sorted(lowest)]
