"""Operating points chosen by recall: the Wilson interval, the lower-bound rule, the table's
format, and which threshold an engine puts in force (docs/vision.md, "Calibration")."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest

from device.config import LocationSection, Settings, VisionSection
from device.contracts.calibration import TARGET_RECALLS, Calibration, CalibrationError
from device.vision.calibration import (
    NOTHING_BLANK,
    Scored,
    calibrate,
    outcome_at,
    threshold_for_recall,
    wilson_interval,
)
from device.vision.engine import VisionEngine
from device.vision.pack import PackError, load_pack
from tests.support.calibration import a_table, pack_with_calibration, table_document
from tests.test_vision_pack import make_pack

_NOW = datetime(2026, 12, 1, tzinfo=UTC)

# -- the Wilson interval ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        (5, 10, 0.2366, 0.7634),  # the textbook example (Wilson 1927; Newcombe 1998)
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
        (11, 11, 0.7412, 1.0),  # the "a small perfect set": about 0.74
        (81, 263, 0.2553, 0.3662),  # Newcombe 1998, table I, example (81/263)
    ],
)
def test_the_wilson_interval_matches_published_values(k, n, low, high):
    got = wilson_interval(k, n)
    assert got is not None
    assert got[0] == pytest.approx(low, abs=5e-5) and got[1] == pytest.approx(high, abs=5e-5)


def test_a_wilson_interval_of_nothing_is_none_and_impossible_counts_are_refused():
    assert wilson_interval(0, 0) is None
    with pytest.raises(ValueError):
        wilson_interval(4, 3)


# -- the lower-bound rule -------------------------------------------------------------------


def _separated(n_not_blank: int, n_blank: int) -> list[Scored]:
    """Every not-blank item scores below every blank one: perfect separation."""
    return [Scored(0.1 + 0.3 * i / n_not_blank, True) for i in range(n_not_blank)] + [
        Scored(0.6 + 0.3 * i / n_blank, False) for i in range(n_blank)
    ]


def test_a_small_perfect_set_supports_no_threshold_so_nothing_is_called_blank():
    table = calibrate(_separated(11, 11), name="tiny", level="event", created=_NOW)
    assert [p.threshold for p in table.points] == [None] * 4
    first = table.points[0]
    assert "11/11" in (first.reason or "") and "0.741" in (first.reason or "")
    assert first.recall == 1.0 and first.blanks_removed == 0.0  # what "call nothing" does


def test_a_large_perfect_set_gets_the_threshold_that_removes_every_blank():
    items = _separated(400, 300)
    lowest_blank = min(i.score for i in items if not i.not_blank)
    table = calibrate(items, name="big", level="event", created=_NOW)
    # 400/400 kept has a lower bound of 0.9905: every target, 0.99 included, is supported.
    assert [p.threshold for p in table.points] == [lowest_blank] * 4
    assert all(p.recall == 1.0 and p.blanks_removed == 1.0 for p in table.points)
    assert table.points[3].recall_interval.low == pytest.approx(400 / (400 + 1.959964**2), 1e-4)


def test_the_threshold_removes_the_most_blanks_the_bound_allows_and_no_animal_for_nothing():
    rng = np.random.default_rng(5)
    items = [Scored(float(s), True) for s in rng.beta(2, 5, 600)] + [
        Scored(float(s), False) for s in rng.beta(5, 2, 600)
    ]
    n = sum(i.not_blank for i in items)
    blank_scores = sorted(i.score for i in items if not i.not_blank)
    thresholds = []
    for target in TARGET_RECALLS:
        threshold, reason = threshold_for_recall(items, target)
        assert threshold is not None and reason is None
        kept = outcome_at(items, threshold).kept_not_blank
        assert wilson_interval(kept, n)[0] >= target
        # It is a blank's score: any higher threshold would remove fewer blanks ...
        assert threshold in blank_scores
        # ... and removing the next blank down would break the bound.
        next_blank = blank_scores[blank_scores.index(threshold) - 1]
        assert wilson_interval(outcome_at(items, next_blank).kept_not_blank, n)[0] < target
        thresholds.append(threshold)
    assert thresholds == sorted(thresholds) and thresholds[0] < thresholds[-1]


def test_overlapping_scores_cost_blanks_removed_as_the_target_rises():
    rng = np.random.default_rng(9)
    items = [Scored(float(s), True) for s in rng.uniform(0, 0.8, 800)] + [
        Scored(float(s), False) for s in rng.uniform(0.2, 1.0, 800)
    ]
    table = calibrate(items, name="overlap", level="frame", created=_NOW)
    removed = [p.blanks_removed for p in table.points]
    assert removed == sorted(removed, reverse=True) and removed[0] > removed[-1]
    for p in table.points:
        assert p.recall_interval.low >= p.target_recall
        assert p.blanks_removed_interval.low <= p.blanks_removed <= p.blanks_removed_interval.high


def test_no_not_blank_items_give_no_threshold():
    threshold, reason = threshold_for_recall([Scored(0.9, False)], 0.9)
    assert threshold is None and "no not-blank" in reason


# -- the format -----------------------------------------------------------------------------


def test_a_table_round_trips_through_its_json_and_picks_rows_by_target():
    table = a_table((0.5, 0.6, 0.7, None))
    again = Calibration.from_json(table.to_json())
    assert again == table
    assert again.point_for(0.98).threshold == 0.7
    assert again.point_for(0.96).target_recall == 0.98  # the stricter row of the two around
    assert again.point_for(0.5).target_recall == 0.9
    assert again.point_for(0.995) is None


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda d: d["points"].pop(), "one row per target recall"),
        (lambda d: d["points"][1].update(threshold=0.4), "below that of a lower target"),
        (lambda d: d["points"][0].update(threshold=1.5), "points.0.threshold"),
        (lambda d: d.update(extra=1), "extra"),
        (lambda d: d["measured_on"].update(created="2026-12-01T00:00:00"), "created"),
        (lambda d: d.update(format="camtrap-calibration/9"), "format"),
        (lambda d: d["measured_on"].pop("n_blank"), "measured_on.n_blank is missing"),
    ],
)
def test_a_malformed_table_is_refused_in_one_line(change, needle):
    document = table_document(a_table((0.5, 0.6, 0.7, None)))
    change(document)
    with pytest.raises(CalibrationError) as err:
        Calibration.from_document(document)
    assert needle in str(err.value) and "\n" not in str(err.value)


# -- the threshold in force -----------------------------------------------------------------


@pytest.fixture
def packs(tmp_path):
    base = make_pack(tmp_path / "base")  # a pack with no blank class: even odds, 0.5
    calibrated = pack_with_calibration(base, tmp_path / "calibrated", a_table((0.6, 0.7, 0.8, 0.9)))
    return base, calibrated


def _engine(pack, **vision) -> VisionEngine:
    return VisionEngine.load(pack, VisionSection(pack=pack, **vision), LocationSection())


def test_a_pack_without_a_table_uses_its_manifest_threshold_and_says_it_is_not_calibrated(packs):
    engine = _engine(packs[0])
    assert engine.thresholds.blank == 0.5
    assert engine.operating_point.source == "the pack manifest"
    assert "not recall-calibrated" in engine.operating_point.describe()


def test_the_pack_table_row_follows_target_recall(packs):
    _, calibrated = packs
    assert _engine(calibrated).thresholds.blank == 0.8  # the default target, 0.98
    assert _engine(calibrated, target_recall=0.9).thresholds.blank == 0.6
    assert _engine(calibrated, target_recall=0.96).thresholds.blank == 0.8
    assert _engine(calibrated, target_recall=0.99).thresholds.blank == 0.9
    assert "calibration.json" in _engine(calibrated).operating_point.source


def test_a_null_row_calls_nothing_blank(tmp_path, packs):
    pack = pack_with_calibration(packs[0], tmp_path / "null", a_table((0.6, 0.7, None, None)))
    engine = _engine(pack)
    assert engine.thresholds.blank == NOTHING_BLANK and engine.operating_point.calls_nothing_blank
    assert "nothing is called blank" in engine.operating_point.describe()


def test_deployment_calibrations_override_the_pack_and_an_explicit_threshold_overrides_all(
    tmp_path, packs
):
    _, calibrated = packs
    deployment = tmp_path / "deployment.json"
    deployment.write_bytes(a_table((0.3, 0.4, 0.45, 0.5)).to_json())
    from_file = _engine(calibrated, calibration_file=deployment)
    assert from_file.thresholds.blank == 0.45
    assert str(deployment) in from_file.operating_point.source
    pushed = _engine(
        calibrated, calibration_file=deployment, calibration=a_table((0.1, 0.2, 0.25, 0.3))
    )
    assert pushed.thresholds.blank == 0.25
    assert pushed.operating_point.source == "vision.calibration (remote config)"
    explicit = _engine(
        calibrated,
        calibration_file=deployment,
        calibration=a_table((0.1, 0.2, 0.25, 0.3)),
        blank_threshold=0.66,
    )
    assert explicit.thresholds.blank == 0.66
    assert explicit.operating_point.source == "vision.blank_threshold"


def test_a_broken_deployment_calibration_file_stops_the_engine_with_one_line(tmp_path, packs):
    missing = tmp_path / "missing.json"
    with pytest.raises(PackError, match=r"vision.calibration_file .*missing.json: no such file"):
        _engine(packs[1], calibration_file=missing)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "camtrap-calibration/1"}))
    with pytest.raises(PackError) as err:
        _engine(packs[1], calibration_file=bad)
    assert "bad.json: measured_on is missing" in str(err.value)


def test_a_pack_with_a_malformed_table_is_refused(tmp_path, packs):
    pack = pack_with_calibration(packs[0], tmp_path / "bad", b'{"format": 1}')
    with pytest.raises(PackError, match=r"calibration\.json: format"):
        load_pack(pack)


def test_a_calibration_table_in_the_config_file_is_typed_by_the_contract():
    document = table_document(a_table((0.5, 0.6, 0.7, 0.8)))
    assert Settings(vision={"calibration": document}).vision.calibration.point_for(0.98)
    broken = {**document, "points": document["points"][:2]}
    with pytest.raises(ValueError, match="one row per target recall"):
        Settings(vision={"calibration": broken})
