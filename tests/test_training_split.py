"""The split ``camtrap-cloud train`` measures a head on: whole events (or, with three or more
deployments, whole deployments) on one side only, chosen by a seeded hash."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from cloud_stub.training.classes import BLANK, animal
from cloud_stub.training.labelled import LabelledImage
from cloud_stub.training.split import PARTS, split_groups

FOX = animal("red fox")


def images(deployments: int, events: int, frames: int = 3) -> list[LabelledImage]:
    """``events`` bursts per deployment, every other one blank."""
    out = []
    for d in range(deployments):
        for e in range(events):
            for f in range(frames):
                cls = BLANK if e % 2 else FOX
                key = f"d{d}/e{e}/f{f}"
                out.append(LabelledImage(key, Path(key), cls, f"d{d}/e{e}", f"dep-{d}"))
    return out


def sides(split, found, unit) -> dict[str, set[str]]:
    parts = defaultdict(set)
    for image in found:
        parts[unit(image)].add(split.part(image))
    return parts


def test_no_event_has_frames_on_two_sides():
    found = images(deployments=2, events=40)
    split = split_groups(found, seed=0)
    assert split.by == "event" and not split.validation_is_test
    assert all(len(p) == 1 for p in sides(split, found, lambda i: i.event).values())
    assert set(split.part_of.values()) == set(PARTS)


def test_three_deployments_are_held_out_whole():
    found = images(deployments=5, events=6)
    split = split_groups(found, seed=0)
    assert split.by == "deployment"
    per_deployment = sides(split, found, lambda i: i.deployment)
    assert all(len(p) == 1 for p in per_deployment.values())
    assert split.groups_per_part() == {"train": 3, "validation": 1, "test": 1}


def test_every_part_sees_blank_and_not_blank_events():
    found = images(deployments=1, events=30)
    split = split_groups(found, seed=4)
    for part in PARTS:
        classes = {i.cls.name for i in found if split.part(i) == part}
        assert classes == {"blank", "red fox"}, part


def test_the_split_is_fixed_by_the_seed_and_changes_with_it():
    found = images(deployments=1, events=40)
    assert split_groups(found, seed=7).part_of == split_groups(list(reversed(found)), 7).part_of
    assert split_groups(found, seed=7).part_of != split_groups(found, seed=8).part_of


def test_too_few_events_for_three_parts_make_validation_the_test_and_say_so():
    found = images(deployments=1, events=4)  # two events per class
    split = split_groups(found, seed=0)
    assert split.validation_is_test
    assert split.test_part == "validation"
    assert "validation doubles as test" in split.rule
    assert split.groups_per_part() == {"train": 2, "validation": 2, "test": 0}
