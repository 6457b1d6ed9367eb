"""The ingest scaling bench, run tiny so it cannot rot: every figure ``make bench`` prints
comes out, from runs that stored every item, through real workers, mosquitto and PostgreSQL."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cloud_stub.broker import MOSQUITTO
from tests.bench.bench_ingest_scale import build_workload, report, run_scale_bench
from tests.support.postgres import PostgresServer

FIGURE = re.compile(r"^bench (\S+) (\S+) (\S+)$", re.MULTILINE)


def test_a_workload_sends_metadata_before_media_and_counts_whole_items() -> None:
    work = build_workload(captures=30, devices=3)
    assert len(work.metas) == 30
    assert len(work.thumbs) == 30
    assert len(work.fulls) == 2  # captures 0 and 25 carry a full file
    assert all(len(sent) > 1 for _, sent in work.fulls.values())  # several chunks each
    assert work.items == 62
    assert {device for device, _, _ in work.metas} == set(work.devices)


def test_the_bench_prints_every_figure_from_complete_runs(
    postgres_server: PostgresServer, capsys: pytest.CaptureFixture[str]
) -> None:
    if not Path(MOSQUITTO).exists():
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    results, sizes = run_scale_bench(
        captures=30, devices=3, worker_counts=(1, 2), postgres=postgres_server
    )
    assert [(r.label, r.workers) for r in results] == [
        ("pg_1w", 1),
        ("pg_2w", 2),
        ("pg_1w_again", 1),
        ("sqlite", 1),
    ]
    assert all(r.items == 62 and r.seconds > 0 for r in results)
    assert all(r.batches >= 1 and r.messages >= 66 for r in results)  # 30 + 30 + 2 x 3 chunks
    assert all(r.pg["wal_bytes"] > 0 for r in results if r.label.startswith("pg_"))
    assert sizes["media_rows"] == 30 and sizes["media_bytes_per_row"] > 0

    report(results, sizes)
    figures = {
        name: (float(value), unit) for name, value, unit in FIGURE.findall(capsys.readouterr().out)
    }
    assert set(figures) == {
        "ingest_items_per_s_pg_1w",
        "ingest_items_per_s_pg_2w",
        "ingest_items_per_s_sqlite",
        "ingest_scaling_2w",
    }
    assert all(value > 0 for value, _ in figures.values())
    assert figures["ingest_items_per_s_pg_1w"][1] == "items/s"
