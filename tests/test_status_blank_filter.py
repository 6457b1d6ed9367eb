"""``camtrap status`` says what a blank verdict means on this trap: the media policy, the
target recall and the blank threshold in force, with where that threshold came from.

Real packs: the default one (which carries a calibration table) and the tiny test models.
"""

from __future__ import annotations

from pathlib import Path

from device.config import DEFAULT_PACK_DIR
from device.status import collect, render
from device.vision.pack import load_pack
from tests.support.calibration import a_table
from tests.support.world import trap_settings


def test_the_default_trap_reports_the_packs_row_for_its_target_recall(tmp_path: Path) -> None:
    settings = trap_settings(tmp_path, vision={"enabled": True, "pack": str(DEFAULT_PACK_DIR)})
    report = collect(settings)
    blank = report["blank_filter"]
    table = load_pack(DEFAULT_PACK_DIR).calibration
    assert table is not None
    row = table.point_for(settings.vision.target_recall)
    assert row is not None
    assert blank["policy"] == "defer"
    assert blank["threshold"] == row.threshold  # None: the table supports no threshold
    assert "calibration.json" in blank["source"]
    assert f"policy defer, target recall {settings.vision.target_recall:g}" in render(report)
    if row.threshold is None:
        assert "nothing is called blank" in render(report)


def test_a_deployment_calibration_moves_the_threshold_with_the_target(tmp_path: Path) -> None:
    table = tmp_path / "calibration.json"
    table.write_bytes(a_table((0.2, 0.3, 0.4, None)).to_json())

    def threshold(target: float) -> float | None:
        vision = {"enabled": True, "calibration_file": str(table), "target_recall": target}
        blank = collect(trap_settings(tmp_path, vision=vision))["blank_filter"]
        assert str(table) in blank["source"]
        return blank["threshold"]

    assert threshold(0.9) == 0.2
    assert threshold(0.96) == 0.4  # the smallest target at or above 0.96 is 0.98
    assert threshold(0.99) is None  # that row is null: nothing is called blank


def test_an_explicit_threshold_is_reported_as_the_operators_choice(tmp_path: Path) -> None:
    settings = trap_settings(
        tmp_path, vision={"enabled": True, "pack": str(DEFAULT_PACK_DIR), "blank_threshold": 0.7}
    )
    blank = collect(settings)["blank_filter"]
    assert blank["threshold"] == 0.7
    assert "vision.blank_threshold" in blank["source"]


def test_a_pack_that_cannot_be_read_is_named_not_hidden(tmp_path: Path) -> None:
    settings = trap_settings(
        tmp_path, vision={"enabled": True, "pack": str(tmp_path / "no-such-pack")}
    )
    report = collect(settings)
    assert report["blank_filter"]["threshold"] is None
    assert "no-such-pack" in report["blank_filter"]["problem"]
    assert "no-such-pack" in render(report)


def test_a_trap_without_vision_says_nothing_is_classified(tmp_path: Path) -> None:
    report = collect(trap_settings(tmp_path, vision={"enabled": False}))
    assert report["blank_filter"]["threshold"] is None
    assert "nothing is classified" in render(report)
