"""Read a COCO Camera Traps metadata file into (image, category) records, or say what is wrong.

The format (used by LILA's camera-trap sets): ``images`` (``id``, ``file_name``), ``categories``
(``id``, ``name``) and ``annotations`` (``image_id``, ``category_id``). Every problem found is
counted with a few examples, so one message lists them all instead of failing on the first.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from cloud_stub.handoff.records import HandoffError, Record


@dataclass
class CocoProblems:
    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def add(self, kind: str, example: str) -> None:
        self.counts[kind] += 1
        if len(self.examples[kind]) < 3:
            self.examples[kind].append(example)

    def describe(self) -> str:
        return "; ".join(
            f"{n} {kind} (e.g. {', '.join(self.examples[kind])})"
            for kind, n in sorted(self.counts.items())
        )


def read_json(source: str) -> Any:
    """Read a local path or any URL Beam's file systems know (gs://, ...)."""
    from apache_beam.io.filesystems import FileSystems

    try:
        with FileSystems.open(source) as handle:
            return json.load(handle)
    except (OSError, ValueError) as exc:
        raise HandoffError(f"cannot read COCO file {source}: {exc}") from exc
    except Exception as exc:  # Beam wraps file-system errors in its own BeamIOError
        raise HandoffError(f"cannot read COCO file {source}: {exc}") from exc


def coco_records(
    data: Any, url_prefix: str, *, source: str = "COCO file", skip_bad: bool = False
) -> tuple[list[Record], CocoProblems]:
    """One record per annotation; raises ``HandoffError`` on any problem unless ``skip_bad``."""
    if not isinstance(data, dict):
        raise HandoffError(f"{source} is not a COCO Camera Traps object")
    missing = [key for key in ("images", "categories", "annotations") if key not in data]
    if missing:
        raise HandoffError(f"{source} lacks the key(s): {', '.join(missing)}")
    problems = CocoProblems()
    categories: dict[Any, str] = {}
    for i, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or "id" not in cat or not isinstance(cat.get("name"), str):
            problems.add("categories without id or name", f"categories[{i}]")
            continue
        categories[cat["id"]] = cat["name"]
    files: dict[Any, str] = {}
    for i, image in enumerate(data["images"]):
        if not isinstance(image, dict) or "id" not in image:
            problems.add("images without id", f"images[{i}]")
            continue
        name = image.get("file_name")
        if not isinstance(name, str) or not name:
            problems.add("images without file_name", f"image {image['id']!r}")
            continue
        files[image["id"]] = name
    records: list[Record] = []
    prefix = url_prefix.rstrip("/") + "/" if url_prefix else ""
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or "image_id" not in ann or "category_id" not in ann:
            problems.add("annotations without image_id or category_id", f"annotations[{i}]")
            continue
        if ann["category_id"] not in categories:
            problems.add("annotations with an unknown category_id", repr(ann["category_id"]))
            continue
        if ann["image_id"] not in files:
            problems.add("annotations whose image has no file", repr(ann["image_id"]))
            continue
        name = files[ann["image_id"]]
        records.append(
            Record(
                image_id=str(ann["image_id"]),
                file_name=name,
                source=prefix + name,
                category=categories[ann["category_id"]],
                origin="coco",
            )
        )
    if problems.counts and not skip_bad:
        raise HandoffError(
            f"{source} has problems: {problems.describe()}. Fix the file, or pass --skip-bad to "
            "leave those entries out (they are counted in the report)."
        )
    return records, problems
