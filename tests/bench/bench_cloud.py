"""Cloud-side benchmarks: the Beam hand-off (dry run, 100k annotations) and the Camtrap DP
export of 10,000 captures (written and validated with frictionless)."""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from tests.bench.common import emit


def bench_handoff(tmp: Path) -> None:
    from cloud_stub.handoff.handoff import HandoffConfig, run_handoff
    from tests.support.cloud_data import write_coco

    coco = tmp / "coco100k.json"
    write_coco(coco, annotations=100_000, seed=5, species=40)
    logging.getLogger("apache_beam").setLevel(logging.ERROR)
    started = time.perf_counter()
    report = run_handoff(
        HandoffConfig(
            out_dir=tmp / "handoff",
            coco=str(coco),
            dry_run=True,
            url_prefix="https://example.org/wcs",
        )
    )
    seconds = time.perf_counter() - started
    emit("handoff_100k_s", seconds, "s")
    print(
        f"bench-info handoff runner {report.runner} (direct_num_workers=1, in_memory); "
        f"{sum(report.raw.values())} annotations, {len(report.after)} classes kept",
        flush=True,
    )


def bench_export(tmp: Path) -> None:
    from cloud_stub.export import run_export
    from tests.support.cloud_data import Site, fill_store

    sites = [Site(f"dep-{i}", f"trap-{i}", 51.0 + i / 100, 3.7 + i / 100) for i in range(10)]
    fill_store(tmp / "ingest", sites, captures=1000, frames=1, seed=3)  # 10,000 captures
    started = time.perf_counter()
    written = run_export(tmp / "ingest", tmp / "pkg")
    seconds = time.perf_counter() - started
    emit("export_10k_s", seconds, "s")
    print(f"bench-info export {written.counts} validated={written.validated}", flush=True)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="camtrap-bench-cloud-") as tmp:
        bench_handoff(Path(tmp))
        bench_export(Path(tmp))


if __name__ == "__main__":
    main()
