"""The training part balanced by the hand-off's rules (docs/handoff.md, "Balance").

Per class, the ``max_per_class`` photos with the smallest seeded hash of their key
(``cloud_stub.handoff.records.rank``): a uniform sample fixed by the seed and the data. A class
with fewer than ``min_per_class`` training photos is left out of the head and reported: a
handful of examples fits noise, and the head would offer that class with confidence it has not
earned. Only the training part is balanced; validation and test keep every photo, as the trap
will meet them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from cloud_stub.handoff.records import rank
from cloud_stub.training.labelled import LabelledImage

__all__ = ["Balanced", "balance"]


@dataclass
class Balanced:
    kept: list[int]  # positions in the given list, in order
    before: Counter[str] = field(default_factory=Counter)  # class name -> photos
    after: Counter[str] = field(default_factory=Counter)
    too_small: dict[str, int] = field(default_factory=dict)  # class left out -> its photos


def balance(
    images: Sequence[LabelledImage], min_per_class: int, max_per_class: int, seed: int
) -> Balanced:
    by_class: dict[str, list[int]] = defaultdict(list)
    for position, image in enumerate(images):
        by_class[image.cls.name].append(position)
    out = Balanced(kept=[], before=Counter({c: len(p) for c, p in by_class.items()}))
    for name, positions in sorted(by_class.items()):
        if len(positions) < min_per_class:
            out.too_small[name] = len(positions)
            continue
        chosen = sorted(positions, key=lambda p: rank(seed, images[p].key))[:max_per_class]
        out.kept += chosen
        out.after[name] = len(chosen)
    out.kept.sort()
    return out
