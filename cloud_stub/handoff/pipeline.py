"""The hand-off as one Apache Beam pipeline: clean, balance, write the AutoML files, copy.

Input is the metadata table the driver wrote (``metadata.jsonl``: one labelled image per line),
read with ``ReadFromText`` so Dataflow can split it across workers. Every step is a plain
function of its element, so DirectRunner and DataflowRunner give the same result:

- clean: drop configured categories; an image whose remaining annotations disagree on the
  label is ambiguous for single-label training and is left out (counted);
- balance: per class, the ``max_per_class`` images with the smallest seeded hash of their
  source. That is a uniformly random sample that depends only on the seed and the data, not
  on the order elements reach a worker, so a run can be repeated exactly; classes with fewer
  than ``min_per_class`` images are left out (and reported);
- hand off: the Vertex AI import CSV and JSONL manifest (sorted, one file each), and a copy of
  each selected image (skipped in a dry run).

Counts leave the pipeline as JSON lines in ``<work>/counts*``; the driver turns them into the
report, so Dataflow runs report exactly like local ones.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from cloud_stub.handoff.categories import DropList
from cloud_stub.handoff.copying import CopyPolicy, copy_image, join
from cloud_stub.handoff.records import Record, automl_label, rank


@dataclass(frozen=True)
class Plan:
    metadata_path: str  # metadata.jsonl written by the driver
    work_dir: str  # where the pipeline writes its outputs (local dir or gs:// prefix)
    dest: str  # where selected images are copied
    drop: DropList
    min_per_class: int
    max_per_class: int
    seed: int
    dry_run: bool
    copy_policy: CopyPolicy = field(default_factory=CopyPolicy)


def _count(kind: str) -> Any:
    def as_line(pair: tuple[str, int]) -> str:
        return json.dumps({"kind": kind, "key": pair[0], "n": pair[1]}, sort_keys=True)

    return as_line


def _resolve(item: tuple[str, Iterable[dict[str, Any]]]) -> Iterator[Any]:
    """One record per image; images with conflicting labels go to the 'ambiguous' output."""
    import apache_beam as beam

    _, rows = item
    rows = list(rows)
    labels = {automl_label(r["category"]) for r in rows}
    if len(labels) > 1:
        yield beam.pvalue.TaggedOutput("ambiguous", rows[0]["source"])
        return
    yield min(rows, key=lambda r: (r["category"], r["image_id"]))


def _keep_large_classes(
    item: tuple[str, list[dict[str, Any]]], sizes: dict[str, int], minimum: int
) -> Iterator[dict[str, Any]]:
    label, chosen = item
    if sizes.get(label, 0) >= minimum:
        yield from chosen


def _import_lines(rows: list[dict[str, Any]]) -> Iterator[str]:
    """Vertex AI import lines (CSV and JSON Lines) and our provenance manifest, sorted."""
    for row in sorted(rows, key=lambda r: (automl_label(r["category"]), r["source"])):
        target, label = row["target"], automl_label(row["category"])
        yield f"csv\t{target},{label}"
        vertex = {"imageGcsUri": target, "classificationAnnotation": {"displayName": label}}
        yield "jsonl\t" + json.dumps(vertex, sort_keys=True)
        provenance = {
            "target": target,
            "label": label,
            "category": row["category"],
            "source": row["source"],
            "origin": row["origin"],
            "imageID": row["image_id"],
        }
        yield "manifest\t" + json.dumps(provenance, sort_keys=True)


def _copy(row: dict[str, Any], dest: str, policy: CopyPolicy) -> dict[str, Any]:
    result = copy_image(row["source"], join(dest, row["file_name"]), policy)
    return {
        **row,
        "target": result.target,
        "status": result.status,
        "attempts": result.attempts,
        "error": result.error,
    }


def _copy_line(done: dict[str, Any]) -> str:
    return json.dumps(
        {
            "kind": "copy",
            "key": done["status"],
            "n": 1,
            "source": done["source"],
            "target": done["target"],
            "attempts": done["attempts"],
            "error": done["error"],
        },
        sort_keys=True,
    )


def build(pipeline: Any, plan: Plan) -> None:
    """Add the hand-off's transforms to ``pipeline``."""
    import apache_beam as beam

    drop = plan.drop
    rows = (
        pipeline
        | "ReadMetadata" >> beam.io.ReadFromText(plan.metadata_path)
        | "Parse" >> beam.Map(json.loads)
    )
    raw_counts = (
        rows
        | "RawKey" >> beam.Map(lambda r: (r["category"], 1))
        | "RawCount" >> beam.CombinePerKey(sum)
        | "RawLine" >> beam.Map(_count("raw"))
    )
    kept = rows | "Clean" >> beam.Filter(lambda r: not drop.drops(r["category"]))
    resolved = (
        kept
        | "ByImage" >> beam.Map(lambda r: (r["source"], r))
        | "GroupImage" >> beam.GroupByKey()
        | "Resolve" >> beam.FlatMap(_resolve).with_outputs("ambiguous", main="images")
    )
    images = resolved.images
    ambiguous = (
        resolved.ambiguous
        | "AmbiguousKey" >> beam.Map(lambda _: ("ambiguous_images", 1))
        | "AmbiguousCount" >> beam.CombinePerKey(sum)
        | "AmbiguousLine" >> beam.Map(_count("ambiguous"))
    )
    by_label = images | "ByLabel" >> beam.Map(lambda r: (automl_label(r["category"]), r))
    sizes = (
        by_label
        | "ClassKey" >> beam.Map(lambda kv: (kv[0], 1))
        | "ClassCount" >> beam.CombinePerKey(sum)
    )
    seed = plan.seed
    selected = (
        by_label
        | "Sample"
        >> beam.combiners.Top.SmallestPerKey(
            plan.max_per_class, key=lambda r: rank(seed, r["source"])
        )
        | "MinPerClass"
        >> beam.FlatMap(_keep_large_classes, beam.pvalue.AsDict(sizes), plan.min_per_class)
    )
    before = sizes | "BeforeLine" >> beam.Map(_count("before"))
    after = (
        selected
        | "AfterKey" >> beam.Map(lambda r: (automl_label(r["category"]), 1))
        | "AfterCount" >> beam.CombinePerKey(sum)
        | "AfterLine" >> beam.Map(_count("after"))
    )
    names = (
        images
        | "LabelName" >> beam.Map(lambda r: (automl_label(r["category"]), r["category"]))
        | "Names" >> beam.combiners.Top.SmallestPerKey(1)
        | "NameLine"
        >> beam.Map(
            lambda kv: json.dumps(
                {"kind": "name", "key": kv[0], "n": 0, "category": kv[1][0]}, sort_keys=True
            )
        )
    )
    lines = [raw_counts, ambiguous, before, after, names]
    if not plan.dry_run:
        copied = (
            selected
            | "Spread" >> beam.Reshuffle()
            | "Copy" >> beam.Map(_copy, plan.dest, plan.copy_policy)
        )
        lines.append(copied | "CopyLine" >> beam.Map(_copy_line))
        # Only images that are really at the destination go into the import files.
        outputs = (
            copied
            | "Arrived" >> beam.Filter(lambda d: d["status"] in ("copied", "skipped"))
            | "Gather" >> beam.combiners.ToList()
            | "ImportLines" >> beam.FlatMap(_import_lines)
        )
        for kind, name in (
            ("csv", "automl_import.csv"),
            ("jsonl", "automl_import.jsonl"),
            ("manifest", "manifest.jsonl"),
        ):
            (
                outputs
                | f"Only{kind}" >> beam.Filter(lambda line, k=kind: line.startswith(k + "\t"))
                | f"Strip{kind}" >> beam.Map(lambda line: line.split("\t", 1)[1])
                | f"Write{kind}"
                >> beam.io.WriteToText(
                    f"{plan.work_dir}/{name}", num_shards=1, shard_name_template=""
                )
            )
    (
        lines
        | "AllCounts" >> beam.Flatten()
        | "WriteCounts"
        >> beam.io.WriteToText(
            f"{plan.work_dir}/counts",
            file_name_suffix=".jsonl",
            num_shards=1,
            shard_name_template="",
        )
    )


def run(plan: Plan, beam_args: list[str]) -> str:
    """Run the pipeline to completion; returns the runner's name."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    options = PipelineOptions(beam_args)
    runner = options.view_as(StandardOptions).runner or "DirectRunner"
    if runner == "DirectRunner":
        # One in-process worker: fastest for a small machine, and no subprocesses to leak.
        extra = {"direct_num_workers": 1, "direct_running_mode": "in_memory"}
        options = PipelineOptions(
            beam_args, **{k: v for k, v in extra.items() if f"--{k}" not in " ".join(beam_args)}
        )
    with beam.Pipeline(options=options) as pipeline:
        build(pipeline, plan)
    return runner


def records_to_lines(records: Iterable[Record]) -> Iterator[str]:
    for record in records:
        yield json.dumps(record.to_json(), sort_keys=True)
