"""Run the hand-off: gather labelled images, run the Beam pipeline, write the report."""

from __future__ import annotations

import contextlib
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from cloud_stub.handoff.categories import DEFAULT_DROP, DropList
from cloud_stub.handoff.coco import coco_records, read_json
from cloud_stub.handoff.copying import CopyPolicy, check_destination
from cloud_stub.handoff.pipeline import Plan, records_to_lines, run
from cloud_stub.handoff.records import HandoffError, Record
from cloud_stub.handoff.report import HandoffReport, fold_counts
from cloud_stub.handoff.stub_source import stub_records


@dataclass
class HandoffConfig:
    out_dir: Path
    coco: str | None = None
    url_prefix: str = ""
    ingest_root: Path | None = None
    db_url: str | None = None  # with ingest_root: the PostgreSQL store (``--db``)
    include_machine: bool = False
    dest: str | None = None  # default: <out_dir>/images
    drop_patterns: tuple[str, ...] = DEFAULT_DROP
    min_per_class: int = 50
    max_per_class: int = 100
    seed: int = 0
    dry_run: bool = False
    skip_bad: bool = False
    copy_policy: CopyPolicy = field(default_factory=CopyPolicy)
    beam_args: list[str] = field(default_factory=list)


def _gather(config: HandoffConfig, report: HandoffReport) -> list[Record]:
    records: list[Record] = []
    if config.coco:
        data = read_json(config.coco)
        found, problems = coco_records(
            data, config.url_prefix, source=config.coco, skip_bad=config.skip_bad
        )
        records += found
        report.bad_entries = dict(problems.counts)
    if config.ingest_root:
        records += stub_records(
            config.ingest_root, include_machine=config.include_machine, url=config.db_url
        )
    return records


def _work_root(beam_args: list[str], out_dir: Path) -> str:
    """The Beam temp location on remote runners, else a hidden dir in OUT."""
    from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions

    temp = PipelineOptions(beam_args).view_as(GoogleCloudOptions).temp_location
    if temp and temp.startswith("gs://"):
        return temp.rstrip("/")
    return str(out_dir / ".beam")


def _put(local: Path, uri: str) -> None:
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.create(uri) as handle:
        handle.write(local.read_bytes())


def _get(uri: str) -> bytes:
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(uri) as handle:
        return handle.read()


def _remove(uri: str) -> None:
    from apache_beam.io.filesystems import FileSystems

    # Cleanup is best effort; the report already says what happened.
    with contextlib.suppress(Exception):
        FileSystems.delete([uri])
    if not uri.startswith("gs://"):
        with contextlib.suppress(OSError):
            Path(uri).parent.rmdir()  # the hidden .beam dir, once empty


def run_handoff(config: HandoffConfig) -> HandoffReport:
    if config.coco is None and config.ingest_root is None:
        raise HandoffError("give an input: --coco FILE and/or --ingest-root DIR")
    if not 0 < config.min_per_class <= config.max_per_class:
        raise HandoffError(
            f"need 0 < --min-per-class ({config.min_per_class}) <= --max-per-class "
            f"({config.max_per_class})"
        )
    started = time.perf_counter()
    out_dir = Path(config.out_dir).absolute()
    dest = config.dest or str(out_dir / "images")
    check_destination(str(out_dir))
    if not config.dry_run:
        check_destination(dest)
    inputs = [f"COCO {config.coco} (prefix {config.url_prefix or 'none'})"] if config.coco else []
    if config.ingest_root:
        kind = "human and machine" if config.include_machine else "human-verified"
        inputs.append(f"stub store {Path(config.ingest_root).absolute()} ({kind} labels)")
    report = HandoffReport(
        runner="?",
        seed=config.seed,
        min_per_class=config.min_per_class,
        max_per_class=config.max_per_class,
        dry_run=config.dry_run,
        inputs=inputs,
    )
    records = _gather(config, report)
    if not records:
        raise HandoffError("the inputs hold no labelled images")
    drop = DropList.of(config.drop_patterns)
    # Job 1's metadata table: one labelled image per line, what the pipeline reads. It is kept
    # in OUT; the pipeline reads its own copy in the work dir, which is in the Beam temp
    # location on remote runners (workers cannot read this machine's disk).
    metadata = out_dir / "metadata.jsonl"
    metadata.write_text("\n".join(records_to_lines(records)) + "\n", encoding="utf-8")
    work = f"{_work_root(config.beam_args, out_dir)}/camtrap-handoff-{uuid.uuid4().hex[:8]}"
    _put(metadata, f"{work}/metadata.jsonl")
    plan = Plan(
        metadata_path=f"{work}/metadata.jsonl",
        work_dir=work,
        dest=dest,
        drop=drop,
        min_per_class=config.min_per_class,
        max_per_class=config.max_per_class,
        seed=config.seed,
        dry_run=config.dry_run,
        copy_policy=config.copy_policy,
    )
    try:
        try:
            report.runner = run(plan, config.beam_args)
        except HandoffError:
            raise
        except Exception as exc:  # Beam wraps worker errors; keep the message, not the stack
            raise HandoffError(f"the pipeline failed: {str(exc).splitlines()[0]}") from exc
        lines = _get(f"{work}/counts.jsonl").decode("utf-8").splitlines()
        fold_counts(report, lines, drop)
        if not config.dry_run:
            for name in ("automl_import.csv", "automl_import.jsonl", "manifest.jsonl"):
                final = out_dir / name
                part = final.with_name(name + ".part")
                part.write_bytes(_get(f"{work}/{name}"))
                part.replace(final)
                report.outputs[name] = str(final)
            report.outputs["images"] = dest
    finally:
        _remove(work)
    report.outputs["metadata"] = str(metadata)
    report.seconds = time.perf_counter() - started
    report.write(out_dir)
    return report
