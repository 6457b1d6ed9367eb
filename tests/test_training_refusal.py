"""A head worse than the model the trap serves is refused and nothing is written; ``--force``
writes it and says so. A site head is blank against not blank for one deployment."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cloud_stub.training.evaluate import BlankFilter, blank_filter, reasons_worse
from device.contracts.pack import read_pack
from device.contracts.recall import Scored
from tests.support.training_world import labelled_folder, review, reviewed_store, train

# So strong an L2 penalty that the head's weights vanish next to its bias: it predicts the
# class priors for every frame, and its blank score orders nothing (AUC 0.5).
USELESS = ("--c", "1e-12")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("scenes")
    labels = labelled_folder(base / "scenes", 80, seed=6)
    return {"base": base, "labels": labels, "scenes": base / "scenes"}


def test_a_head_worse_than_the_serving_model_is_refused_and_nothing_is_written(scenes):
    out = scenes["base"] / "refused"
    code, stdout, stderr = train(
        "--images", scenes["scenes"], "--labels", scenes["labels"], "--out", out,
        "--cache", scenes["base"] / "cache", "--json", *USELESS,
    )  # fmt: skip
    assert code == 1
    report = json.loads(stdout)
    head, serving = report["blank_filter"]["head"]["auc"], report["blank_filter"]["serving"]["auc"]
    assert head == 0.5 < serving
    (line,) = stderr.strip().splitlines()
    assert line.startswith("camtrap-cloud train: refused: the head is worse than the serving")
    said = re.search(r"blank AUC (\d\.\d{4}) < the serving model's (\d\.\d{4})", line)
    assert said and [float(v) for v in said.groups()] == [round(head, 4), round(serving, 4)]
    assert "nothing written" in line
    assert not out.exists() and not out.with_name("refused.report").exists()
    assert report["verdict"] == "refused" and report["pack"] is None


def test_force_writes_the_worse_head_and_says_so(scenes):
    out = scenes["base"] / "forced"
    code, stdout, stderr = train(
        "--images", scenes["scenes"], "--labels", scenes["labels"], "--out", out,
        "--cache", scenes["base"] / "cache", "--force", *USELESS,
    )  # fmt: skip
    assert code == 0
    assert "--force: wrote a head that is worse than the serving model" in stderr
    assert "verdict: forced" in stdout
    pack = read_pack(out)
    assert pack.manifest.model_extra["training"]["forced"] is True
    assert (
        json.loads((out.with_name("forced.report") / "report.json").read_text())["verdict"]
        == "forced"
    )


def test_a_sound_head_on_the_same_scenes_is_not_refused(scenes):
    out = scenes["base"] / "sound"
    code, stdout, stderr = train(
        "--images", scenes["scenes"], "--labels", scenes["labels"], "--out", out,
        "--cache", scenes["base"] / "cache", "--json",
    )  # fmt: skip
    assert code == 0, stderr
    assert json.loads(stdout)["worse"] == [] and read_pack(out).kind == "head"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site") / "ingest"
    bursts = reviewed_store(root, ["dep-a", "dep-b"], 40, seed=21)
    review(root, bursts)
    return root


def test_a_site_head_is_blank_against_animal_for_one_deployment(site, tmp_path):
    out = tmp_path / "site-head"
    code, stdout, stderr = train(
        "--root", site, "--deployment", "dep-a", "--site-head", "--out", out, "--json",
    )  # fmt: skip
    report = json.loads(stdout)
    assert code == 0, stderr
    pack = read_pack(out)
    assert [t.kind for t in pack.taxa] == ["blank", "animal"]
    assert [t.common_name for t in pack.taxa] == ["blank", "animal"]
    assert pack.manifest.name == "head-dep-a"
    assert report["site_head"] is True and report["split"]["by"] == "event"
    assert report["source"].endswith("(deployment dep-a)")
    assert (site / "embeddings" / "embeddings.sqlite").is_file()  # the store's own cache


def test_a_site_head_needs_one_site(site, tmp_path):
    code, _, stderr = train("--root", site, "--site-head", "--out", tmp_path / "h")
    assert code == 1
    assert "--site-head trains on one site: the labels span 2 deployments" in stderr


def test_removing_fewer_blanks_at_the_target_recall_is_worse_whatever_the_auc():
    def events(scores: list[float], not_blank: bool) -> list[Scored]:
        return [Scored(score, not_blank) for score in scores]

    animals = events([0.1 + k / 400 for k in range(40)], True)
    serving_blanks = events([0.8 + k / 200 for k in range(20)], False)
    serving = blank_filter(animals + serving_blanks, animals + serving_blanks, 0.9)
    # The head orders the reported events perfectly too, but on validation four animals
    # score above every blank: keeping recall 0.9 there (95% bound) means calling nothing
    # blank.
    head_blanks = events([0.5 + k / 200 for k in range(20)], False)
    head_validation = animals + events([0.95] * 4, True) + head_blanks
    head = blank_filter(head_validation, animals + head_blanks, 0.9)
    assert head.auc == serving.auc == 1.0
    assert head.threshold is None and head.removed_blank == 0
    assert serving.removed_blank == 20
    assert reasons_worse(head, serving) == [
        "removes 0 of 20 blank events at target recall 0.9 < the serving model's 20 (beyond "
        "chance: paired bootstrap over the 60 reported events, one-sided 95%)"
    ]
    assert reasons_worse(serving, head) == []


def _judged(scores: list[float], truth: list[bool]) -> BlankFilter:
    items = [Scored(score, not_blank) for score, not_blank in zip(scores, truth, strict=True)]
    return blank_filter(items, items, 0.98)


def test_one_misordered_pair_among_a_handful_of_events_is_not_a_refusal():
    # Four reported events: the serving model orders them perfectly, the head swaps one pair
    # (AUC 0.75 < 1.0). So few events cannot tell the two apart; refusing would be chance.
    truth = [True, True, False, False]
    serving = _judged([0.1, 0.2, 0.8, 0.9], truth)
    head = _judged([0.1, 0.85, 0.8, 0.9], truth)
    assert head.auc is not None and serving.auc is not None and head.auc < serving.auc
    assert reasons_worse(head, serving) == []


def test_the_same_kind_of_gap_over_many_events_is_a_refusal():
    # Forty times the events, a quarter of the head's not-blank events scored among the
    # blanks: the paired bootstrap says the head is worse.
    truth = [True] * 80 + [False] * 80
    serving = _judged([0.1] * 80 + [0.9] * 80, truth)
    head = _judged([0.1] * 60 + [0.95] * 20 + [0.9] * 80, truth)
    reasons = reasons_worse(head, serving)
    assert len(reasons) == 1 and reasons[0].startswith(
        "blank AUC 0.7500 < the serving model's 1.0000"
    )


def test_models_judged_on_different_events_cannot_be_compared():
    with pytest.raises(ValueError, match="different events"):
        reasons_worse(_judged([0.1, 0.9], [True, False]), _judged([0.1, 0.9], [False, True]))


def test_the_serving_model_may_be_a_head_and_an_equal_head_is_not_worse(scenes):
    first = scenes["base"] / "first"
    again = scenes["base"] / "again"
    common = ["--images", scenes["scenes"], "--labels", scenes["labels"],
              "--cache", scenes["base"] / "cache", "--name", "head-scenes"]  # fmt: skip
    assert train(*common, "--out", first)[0] == 0
    code, stdout, stderr = train(*common, "--out", again, "--serving", first,
                                 "--version", "1.0.1", "--json")  # fmt: skip
    assert code == 0, stderr
    report = json.loads(stdout)
    assert report["serving"] == "efficientnet-lite0-imagenet@1.0.0+head-scenes@1.0.0"
    blank = report["blank_filter"]
    assert blank["head"] == blank["serving"]  # the same fit: equal is not worse
    assert report["worse"] == []
