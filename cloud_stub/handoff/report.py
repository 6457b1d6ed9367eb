"""The hand-off report: counts per class before and after balancing, and what was left out."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cloud_stub.handoff.categories import DropList


@dataclass
class HandoffReport:
    runner: str
    seed: int
    min_per_class: int
    max_per_class: int
    dry_run: bool
    inputs: list[str]
    raw: dict[str, int] = field(default_factory=dict)  # annotations per dataset category
    dropped: dict[str, int] = field(default_factory=dict)  # of those, the dropped categories
    before: dict[str, int] = field(default_factory=dict)  # images per label after cleaning
    after: dict[str, int] = field(default_factory=dict)  # images per label selected
    below_minimum: dict[str, int] = field(default_factory=dict)  # labels left out
    label_names: dict[str, str] = field(default_factory=dict)  # label -> dataset category
    ambiguous_images: int = 0
    bad_entries: dict[str, int] = field(default_factory=dict)  # COCO problems skipped
    copies: dict[str, int] = field(default_factory=dict)  # copied / skipped / failed
    copy_failures: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    outputs: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        lines = [
            f"camtrap hand-off ({'dry run' if self.dry_run else 'run'}) on {self.runner}, "
            f"seed {self.seed}, {self.min_per_class}..{self.max_per_class} images per class, "
            f"{self.seconds:.1f} s",
            "inputs: " + ", ".join(self.inputs),
            f"annotations read: {sum(self.raw.values())} in {len(self.raw)} categories; "
            f"dropped {sum(self.dropped.values())} in {len(self.dropped)} categories",
        ]
        if self.dropped:
            lines.append(
                "  dropped: " + ", ".join(f"{k} ({v})" for k, v in sorted(self.dropped.items()))
            )
        if self.ambiguous_images:
            lines.append(f"images left out with conflicting labels: {self.ambiguous_images}")
        for kind, n in sorted(self.bad_entries.items()):
            lines.append(f"COCO entries skipped: {n} {kind}")
        lines.append(f"{'label':32} {'before':>8} {'after':>8}")
        for label in sorted(self.before):
            note = "  below minimum, left out" if label in self.below_minimum else ""
            lines.append(f"{label:32} {self.before[label]:>8} {self.after.get(label, 0):>8}{note}")
        lines.append(
            f"{'total':32} {sum(self.before.values()):>8} {sum(self.after.values()):>8}"
            f"  ({len(self.after)} classes kept, {len(self.below_minimum)} below minimum)"
        )
        if self.copies:
            lines.append("copies: " + ", ".join(f"{k} {v}" for k, v in sorted(self.copies.items())))
        for failure in self.copy_failures[:10]:
            lines.append(f"  failed: {failure['source']}: {failure['error']}")
        for name, path in self.outputs.items():
            lines.append(f"{name}: {path}")
        return "\n".join(lines)

    def write(self, out_dir: Path) -> None:
        self.outputs.setdefault("report", str((out_dir / "report.txt").absolute()))
        (out_dir / "report.json").write_text(json.dumps(self.to_json(), indent=2, sort_keys=True))
        (out_dir / "report.txt").write_text(self.text() + "\n")


def fold_counts(report: HandoffReport, lines: list[str], drop: DropList) -> None:
    """Fill the report from the pipeline's count lines."""
    copies: Counter = Counter()
    for line in lines:
        item = json.loads(line)
        kind, key, n = item["kind"], item["key"], item["n"]
        if kind == "raw":
            report.raw[key] = n
            if drop.drops(key):
                report.dropped[key] = n
        elif kind == "before":
            report.before[key] = n
        elif kind == "after":
            report.after[key] = n
        elif kind == "ambiguous":
            report.ambiguous_images = n
        elif kind == "name":
            report.label_names[key] = item["category"]
        elif kind == "copy":
            copies[key] += 1
            if key == "failed":
                report.copy_failures.append(
                    {"source": item["source"], "target": item["target"], "error": item["error"]}
                )
    report.copies = dict(copies)
    report.copy_failures.sort(key=lambda f: f["source"])
    report.below_minimum = {
        label: n for label, n in report.before.items() if n < report.min_per_class
    }
