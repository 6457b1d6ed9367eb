"""Train, validation and test parts, split by whole groups so no burst-mate leaks across.

Frames of one event are nearly the same picture: one in training and its neighbour in test
would measure memory, not generalisation. So whole groups go to one part: whole deployments
when there are at least ``MIN_DEPLOYMENTS`` of them (a head must work at a site it has not
seen), else whole events.

Within each stratum (for events: the event's class, so every part sees every class that has
enough events; deployments are one stratum) groups are ordered by a seeded hash of their id
(``cloud_stub.handoff.records.rank``: the same seed and data give the same split, whatever
order they arrive in). The first ``HELD_SHARE`` of them (at least one, when the stratum has
``MIN_GROUPS`` or more) go to test, the next as many to validation (the calibration set), the
rest to training: 60/20/20. When that leaves validation or test empty, there are too few
groups for three parts: ``TWO_PART_SHARE`` of each stratum (at least one, when it has two or
more) is held out as validation, which then doubles as test, and every figure measured on it
is labelled optimistic.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from cloud_stub.handoff.records import rank
from cloud_stub.training.labelled import LabelledImage

__all__ = ["PARTS", "Split", "split_groups"]

PARTS = ("train", "validation", "test")
MIN_DEPLOYMENTS = 3
HELD_SHARE = 0.2
MIN_GROUPS = 3
TWO_PART_SHARE = 0.3


@dataclass(frozen=True)
class Split:
    by: str  # "deployment" or "event": the unit that is never divided
    seed: int
    part_of: dict[str, str]  # group id -> train | validation | test
    validation_is_test: bool

    def group(self, image: LabelledImage) -> str:
        return image.deployment if self.by == "deployment" else image.event

    def part(self, image: LabelledImage) -> str:
        return self.part_of[self.group(image)]

    def groups_per_part(self) -> dict[str, int]:
        counts = Counter(self.part_of.values())
        return {p: counts.get(p, 0) for p in PARTS}

    @property
    def test_part(self) -> str:
        """The part figures are reported on."""
        return "validation" if self.validation_is_test else "test"

    @property
    def rule(self) -> str:
        what = (
            f"whole deployments (>= {MIN_DEPLOYMENTS} of them)"
            if self.by == "deployment"
            else "whole events, stratified by the event's class"
        )
        if self.validation_is_test:
            shares = f"{1 - TWO_PART_SHARE:.0%}/{TWO_PART_SHARE:.0%} train/validation; "
            return f"{what}, {shares}too few groups for a test part: validation doubles as test"
        return f"{what}, 60/20/20 train/validation/test by a seeded hash of the group id"


def _event_stratum(images: Sequence[LabelledImage]) -> str:
    """An event's class: its most frequent not-blank class (a crossing's empty first frame
    does not make it blank), else blank."""
    counts = Counter(i.cls.name for i in images if i.cls.not_blank)
    return counts.most_common(1)[0][0] if counts else "blank"


def _order(seed: int, groups: Sequence[str]) -> list[str]:
    return sorted(groups, key=lambda g: rank(seed, f"split\x00{g}"))


def _three_parts(strata: dict[str, list[str]], seed: int) -> dict[str, str]:
    part_of: dict[str, str] = {}
    for groups in strata.values():
        ordered = _order(seed, groups)
        n = len(ordered)
        held = max(1, math.floor(HELD_SHARE * n)) if n >= MIN_GROUPS else 0
        for k, group in enumerate(ordered):
            part_of[group] = "test" if k < held else "validation" if k < 2 * held else "train"
    return part_of


def _two_parts(strata: dict[str, list[str]], seed: int) -> dict[str, str]:
    part_of: dict[str, str] = {}
    for groups in strata.values():
        ordered = _order(seed, groups)
        n = len(ordered)
        held = max(1, math.floor(TWO_PART_SHARE * n)) if n >= 2 else 0
        for k, group in enumerate(ordered):
            part_of[group] = "validation" if k < held else "train"
    return part_of


def split_groups(images: Sequence[LabelledImage], seed: int) -> Split:
    deployments = {i.deployment for i in images}
    by = "deployment" if len(deployments) >= MIN_DEPLOYMENTS else "event"
    strata: dict[str, list[str]] = defaultdict(list)
    if by == "deployment":
        strata["all"] = sorted(deployments)
    else:
        members: dict[str, list[LabelledImage]] = defaultdict(list)
        for image in images:
            members[image.event].append(image)
        for event, frames in sorted(members.items()):
            strata[_event_stratum(frames)].append(event)
    part_of = _three_parts(strata, seed)
    used = set(part_of.values())
    if {"validation", "test"} <= used:
        return Split(by, seed, part_of, validation_is_test=False)
    return Split(by, seed, _two_parts(strata, seed), validation_is_test=True)
