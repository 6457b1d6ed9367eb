"""``camtrap eval --events`` and ``camtrap calibrate``: photos grouped into events and run
through the trap's own per-event path, on synthetic bursts written as a camera's JPEGs
(tests/support/bursts.py), with the real default pack."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from PIL import Image

from device.config import LocationSection, Settings, VisionSection
from device.contracts.calibration import Calibration
from device.errors import UserError
from device.exitcodes import Exit
from device.vision.calibration import NOTHING_BLANK
from device.vision.engine import VisionEngine
from device.vision.evaluate import read_labels
from device.vision.event_eval import EngineMaker, labelled_events, run_events
from device.vision.sequences import exif_taken_at, plan_events
from tests.support.bursts import write_bursts
from tests.support.calibration import a_table, pack_with_calibration
from tests.test_vision_commands import run
from tests.test_vision_pack import make_pack

DEV_SET = Path("/work/shared/camtrap-dev")


def _plan(folder: Path, gap: float = 60.0):
    rows = read_labels(folder / "labels.csv")
    return plan_events(rows, folder, gap, list(rows[0].columns))


# -- grouping -------------------------------------------------------------------------------


def test_without_an_event_column_photos_are_grouped_by_their_exif_time_gap(tmp_path):
    written = write_bursts(tmp_path, 4, seed=2, burst_gap_s=600, frame_interval_s=1.5)
    assert exif_taken_at(tmp_path / written[1].file) == written[1].taken_at
    plan = _plan(tmp_path, gap=60)
    assert [[f.sample.file for f in e.frames] for e in plan.events] == [
        [w.file for w in written if w.scene == scene] for scene in range(4)
    ]
    assert "EXIF DateTimeOriginal" in plan.grouping and plan.site_rule.startswith("the whole")
    # A gap shorter than the frame interval makes every photo its own event.
    assert len(_plan(tmp_path, gap=1.0).events) == 12


def test_a_photo_without_exif_time_is_an_event_of_its_own(tmp_path):
    write_bursts(tmp_path, 2, seed=2, without_time=("b000_f1.jpg",))
    events = [[f.sample.file for f in e.frames] for e in _plan(tmp_path).events]
    assert ["b000_f1.jpg"] in events and ["b000_f0.jpg", "b000_f2.jpg"] in events
    assert len(events) == 3


def test_the_event_column_groups_and_rows_without_a_value_stand_alone(tmp_path):
    write_bursts(tmp_path, 3, seed=2, frame_interval_s=1000)  # times far apart on purpose
    labels = tmp_path / "labels.csv"
    rows = list(csv.DictReader(labels.open()))
    for row in rows:
        row["event"] = "" if row["file"].startswith("b002") else row["file"][:4]
    with labels.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plan = _plan(tmp_path, gap=1)
    sizes = {e.event_id: len(e.frames) for e in plan.events}
    assert sizes["b000"] == 3 and sizes["b001"] == 3
    assert sum(size == 1 for size in sizes.values()) == 3  # the b002 frames, one each
    assert "event column" in plan.grouping


def test_sites_come_from_the_deployment_then_site_then_dataset_column(tmp_path):
    write_bursts(
        tmp_path, 4, seed=2, extra_columns={"dataset": ["a", "a", "b", "b"], "site": list("xyxy")}
    )
    plan = _plan(tmp_path)
    assert plan.sites == ["x", "y"] and plan.site_rule == "the site column"
    assert all(len(e.frames) == 3 for e in plan.events)


# -- the trap's per-event path ---------------------------------------------------------------


@pytest.fixture(scope="module")
def default_engine() -> VisionEngine:
    vision = VisionSection()
    return VisionEngine.load(vision.pack, vision, LocationSection())


def test_the_engine_starts_afresh_at_each_site_and_learns_only_from_its_own_verdicts(
    tmp_path, default_engine
):
    write_bursts(tmp_path, 4, seed=3, extra_columns={"dataset": ["a", "a", "b", "b"]})
    plan = _plan(tmp_path)
    made: list[VisionEngine] = []
    learnt: list[int] = []

    def engines(calibration) -> EngineMaker:
        vision = VisionSection(calibration=calibration)
        return EngineMaker(default_engine, vision, LocationSection())

    def counting(maker: EngineMaker):
        def new() -> VisionEngine:
            engine = maker.configured()
            made.append(engine)
            original = engine.learn_background
            engine.learn_background = lambda lores: (learnt.append(1), original(lores))
            return engine

        return new

    # A table that calls nothing blank: nothing may teach the background, whatever the labels.
    scores = run_events(
        labelled_events(plan.events, (320, 240)), counting(engines(a_table((None,) * 4)))
    )
    assert len(made) == 2  # sites a and b
    assert not any(e.is_blank for e in scores) and learnt == []
    # A table that calls everything blank: every frame of every event teaches it.
    run_events(labelled_events(plan.events, (320, 240)), counting(engines(a_table((0.0,) * 4))))
    assert len(learnt) == 12


def test_eval_events_reports_frames_and_events_with_intervals_auc_and_difficulty(tmp_path, capsys):
    written = write_bursts(
        tmp_path / "set", 6, seed=4, extra_columns={"difficulty": ["easy", "hard"] * 3}
    )
    code = run(
        ["eval", str(tmp_path / "set"), "--events", "--plot", str(tmp_path / "pr.png")],
        Settings(),
    )
    out = capsys.readouterr().out
    assert code == 0
    frame_row = next(line for line in out.splitlines() if line.startswith("frame  "))
    event_row = next(line for line in out.splitlines() if line.startswith("event  "))
    n_not_blank = sum(w.label == "animal" for w in written)
    assert f"{n_not_blank} / {len(written) - n_not_blank}" in frame_row
    animal_bursts = {w.scene for w in written if w.label == "animal"}
    assert f"{len(animal_bursts)} / {6 - len(animal_bursts)}" in event_row
    assert "[" in frame_row and "]" in frame_row  # Wilson intervals
    assert "threshold in force:" in out and "events: 6 from 18 frames" in out
    assert "descriptive points of THIS set, not thresholds" in out
    assert "per difficulty" in out and " easy " in out and " hard " in out
    with Image.open(tmp_path / "pr.png") as im:
        assert im.format == "PNG"


def test_eval_split_by_scores_each_group_at_a_threshold_calibrated_on_the_others(tmp_path, capsys):
    write_bursts(tmp_path, 4, seed=5, extra_columns={"dataset": ["a", "a", "b", "b"]})
    code = run(["eval", str(tmp_path), "--events", "--split-by", "dataset"], Settings())
    out = capsys.readouterr().out
    assert code == 0
    assert "leave-one-dataset-out" in out
    assert "dataset=a: calibrated on" in out and "dataset=b: calibrated on" in out
    # Two bursts per side are far too few for any target: each fold calls nothing blank.
    assert out.count("threshold none") == 2
    assert "pooled held-out figures:" in out


def test_calibrate_events_writes_a_table_a_trap_then_uses(tmp_path, capsys):
    write_bursts(tmp_path / "set", 5, seed=6)
    out = tmp_path / "deployment-calibration.json"
    code = run(
        ["calibrate", str(tmp_path / "set"), "--events", "--out", str(out), "--name", "my photos"],
        Settings(),
    )
    printed = capsys.readouterr().out
    assert code == 0 and f"wrote {out}" in printed and "calibration set: my photos" in printed
    table = Calibration.from_json(out.read_bytes())
    assert table.measured_on.level == "event" and table.measured_on.name == "my photos"
    assert table.measured_on.n_not_blank + table.measured_on.n_blank == 5
    # Five events support no target: the trap calls nothing blank, conservatively.
    assert all(p.threshold is None for p in table.points)
    vision = VisionSection(calibration_file=out)
    engine = VisionEngine.load(vision.pack, vision, LocationSection())
    assert engine.thresholds.blank == NOTHING_BLANK
    assert str(out) in engine.operating_point.source


def test_calibrate_frames_and_synthetic_bursts(tmp_path, capsys):
    write_bursts(tmp_path / "set", 2, seed=6)
    frames = tmp_path / "frames.json"
    assert run(["calibrate", str(tmp_path / "set"), "--out", str(frames)], Settings()) == 0
    table = Calibration.from_json(frames.read_bytes())
    assert table.measured_on.level == "frame"
    assert table.measured_on.n_not_blank + table.measured_on.n_blank == 6
    synthetic = tmp_path / "synthetic.json"
    argv = ["calibrate", "--synthetic", "3", "--seed", "9", "--out", str(synthetic)]
    assert run(argv, Settings()) == 0
    table = Calibration.from_json(synthetic.read_bytes())
    assert table.measured_on.n_not_blank + table.measured_on.n_blank == 3
    assert "seed=9 n=3" in table.measured_on.name and table.measured_on.level == "event"


def test_the_calibration_ignores_earlier_tables_so_it_can_be_repeated(tmp_path, capsys):
    """Calibrating with a calibration already in force gives the same table as without."""
    write_bursts(tmp_path / "set", 3, seed=8)
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    assert run(["calibrate", str(tmp_path / "set"), "--events", "--out", str(first)],
               Settings()) == 0  # fmt: skip
    settings = Settings(vision={"calibration": a_table((0.0, 0.0, 0.0, 0.0)).model_dump()})
    argv = ["calibrate", str(tmp_path / "set"), "--events", "--out", str(second)]
    assert run(argv, settings) == 0
    strip = lambda p: {**json.loads(p.read_text()), "measured_on": None}  # noqa: E731
    assert strip(first) == strip(second)


# -- errors: one line, a documented exit code ---------------------------------------------------


def _user_error(argv: list[str], settings: Settings | None = None) -> UserError:
    with pytest.raises(UserError) as err:
        run(argv, settings or Settings())
    assert "\n" not in err.value.message
    return err.value


def test_every_error_of_calibrate_and_eval_events_has_its_exit_code(tmp_path):
    write_bursts(tmp_path / "set", 1, seed=1, extra_columns={"dataset": ["a"]})
    good = str(tmp_path / "set")
    out = str(tmp_path / "t.json")
    (tmp_path / "bad.csv").write_text("file,label\nx.jpg,cat\n")
    cases = [
        (["calibrate", str(tmp_path / "missing"), "--out", out], Exit.NO_INPUT, "missing"),
        (["calibrate", good, "--labels", str(tmp_path / "no.csv"), "--out", out], Exit.NO_INPUT,
         "no.csv"),
        (["calibrate", good, "--labels", str(tmp_path / "bad.csv"), "--out", out],
         Exit.DATA_ERROR, "label 'cat'"),
        (["calibrate", good, "--out", str(tmp_path / "nodir" / "t.json")], Exit.CANT_CREATE,
         "does not exist"),
        (["calibrate", good, "--out", str(tmp_path)], Exit.CANT_CREATE, "is a directory"),
        (["calibrate", "--out", out], Exit.USAGE, "either DIR"),
        (["calibrate", good, "--synthetic", "2", "--out", out], Exit.USAGE, "either DIR"),
        (["calibrate", "--synthetic", "0", "--out", out], Exit.USAGE, "between 1"),
        (["calibrate", good, "--gap", "5", "--out", out], Exit.USAGE, "needs --events"),
        (["eval", good, "--gap", "5"], Exit.USAGE, "needs --events"),
        (["eval", good, "--events", "--gap", "0"], Exit.USAGE, "more than 0"),
        (["eval", good, "--split-by", "dataset"], Exit.USAGE, "needs --events"),
        (["eval", good, "--events", "--split-by", "camera"], Exit.DATA_ERROR, "no column"),
        (["eval", good, "--events", "--split-by", "dataset"], Exit.DATA_ERROR, "at least 2"),
        (["eval", str(tmp_path / "missing"), "--events"], Exit.NO_INPUT, "no such directory"),
    ]  # fmt: skip
    for argv, code, needle in cases:
        err = _user_error(argv)
        assert err.code == code and needle in err.message, (argv, err.code, err.message)
    assert not (tmp_path / "t.json").exists()  # no half-written table was left behind


def test_a_broken_deployment_calibration_is_one_line_and_exit_2(tmp_path, capsys):
    write_bursts(tmp_path / "set", 1, seed=1)
    (tmp_path / "cal.json").write_text("{}")
    settings = Settings(vision={"calibration_file": tmp_path / "cal.json"})
    assert run(["eval", str(tmp_path / "set"), "--events"], settings) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("camtrap eval: vision.calibration_file") and "\n" not in err


def test_a_tiny_pack_with_a_table_evaluates_at_its_row(tmp_path, capsys):
    pack = pack_with_calibration(
        make_pack(tmp_path / "base"), tmp_path / "pack", a_table((0.1, 0.2, 0.3, 0.4))
    )
    write_bursts(tmp_path / "set", 2, seed=1)
    settings = Settings(vision={"pack": pack, "target_recall": 0.95})
    assert run(["eval", str(tmp_path / "set"), "--events"], settings) == 0
    out = capsys.readouterr().out
    assert "threshold in force: 0.2000 from the pack's calibration.json: row 0.95" in out


# -- the real dev photos ------------------------------------------------------------------------


@pytest.mark.skipif(
    not (DEV_SET / "labels.csv").is_file(), reason=f"{DEV_SET} (real camera-trap photos) absent"
)
def test_the_dev_photos_form_their_real_bursts_and_support_no_calibration(tmp_path, capsys):
    code = run(["eval", str(DEV_SET), "--events"], Settings())
    out = capsys.readouterr().out
    assert code == 0 and "events: 14 from 20 frames at 5 site(s)" in out
    # The jackal burst is an animal event though two of its three frames are empty.
    assert "S1_D04_R6_E2 [Snapshot Serengeti] truth=not blank" in out
    table = tmp_path / "dev.json"
    assert run(["calibrate", str(DEV_SET), "--events", "--out", str(table)], Settings()) == 0
    # Ten not-blank events: 10/10 has a lower bound of 0.72, below every target.
    assert all(p.threshold is None for p in Calibration.from_json(table.read_bytes()).points)


def test_the_real_command_line_says_a_calibrate_error_in_one_line(tmp_path):
    from tests.test_cli_errors import one_error_line, trap_config
    from tests.test_cli_errors import run as run_cli

    write_bursts(tmp_path / "set", 1, seed=1)
    target = tmp_path / "no-such-dir" / "cal.json"
    result = run_cli(
        "camtrap", "calibrate", str(tmp_path / "set"), "--events", "--out", str(target),
        config=trap_config(tmp_path),
    )  # fmt: skip
    one_error_line(result, Exit.CANT_CREATE, str(target), "does not exist")
    result = run_cli(
        "camtrap", "calibrate", str(tmp_path / "gone"), "--out", str(tmp_path / "c.json"),
        config=trap_config(tmp_path),
    )  # fmt: skip
    one_error_line(result, Exit.NO_INPUT, str(tmp_path / "gone"))
