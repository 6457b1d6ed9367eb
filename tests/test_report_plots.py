"""``camtrap-cloud report``: labelled plots and a text summary from what ingest stored."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from cloud_stub.cli import main as cloud_main
from cloud_stub.report import write_report
from cloud_stub.report.data import load
from tests.support.cloud_data import Site, add_review, add_telemetry, fill_store

PNGS = (
    "detections_per_species.png",
    "activity_by_hour.png",
    "blank_ratio_per_device.png",
    "device_health.png",
)


@pytest.fixture
def store(tmp_path: Path):
    filled = fill_store(
        tmp_path / "ingest",
        [Site("dep-a", "trap-1"), Site("dep-b", "trap-2")],
        captures=12,
        frames=2,
    )
    add_telemetry(filled.root, "trap-1", hours=5)
    add_telemetry(filled.root, "trap-2", hours=3, seed=9)
    return filled


def test_report_writes_every_plot_and_a_summary(store, tmp_path):
    out = write_report(store.root, tmp_path / "report")

    assert out == (tmp_path / "report").absolute()
    for name in PNGS:
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.width > 300 and image.height > 200
    summary = (out / "summary.txt").read_text()
    assert "trap-1" in summary and "trap-2" in summary and "free disk" in summary


def test_counts_follow_the_store_and_prefer_human_labels(store):
    animal = next(o for o in store.observations if o["observation_type"] == "animal")
    siblings = [o for o in store.observations if o["event_id"] == animal["event_id"]]
    before = load(store.root)
    add_review(store.root, animal, scientific_name="Martes foina", common_name="beech marten")
    for other in siblings:
        if other is not animal:
            add_review(
                store.root, other, scientific_name="Martes foina", common_name="beech marten"
            )

    after = load(store.root)

    assert after.detections["beech marten"] == 1
    assert after.detections[animal["common_name"]] == before.detections[animal["common_name"]] - 1
    events = {o["event_id"] for o in store.observations}
    assert sum(n for _, n in after.blank_ratio.values()) == len(events)
    assert len(after.health["trap-1"]) == 5 and len(after.health["trap-2"]) == 3


def test_empty_store_still_gives_a_readable_report(tmp_path):
    from cloud_stub.ingest.store import IngestStore

    IngestStore(tmp_path / "ingest").close()
    out = write_report(tmp_path / "ingest", tmp_path / "report")

    assert "no telemetry received" in (out / "summary.txt").read_text()
    assert all((out / name).is_file() for name in PNGS)


def test_cli_prints_the_report_dir(store, tmp_path, capsys):
    out = tmp_path / "r"
    assert cloud_main(["report", "--root", str(store.root), "--out", str(out)]) == 0
    assert f"report: {out.absolute()}" in capsys.readouterr().out
    assert cloud_main(["report", "--root", str(tmp_path / "none"), "--out", str(out)]) == 1
    assert "no ingest store" in capsys.readouterr().err
