"""camtrap classify / eval / model import / model info, through their argparse entry points."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from device.config import ConfigError, Settings
from device.errors import UserError
from device.exitcodes import Exit
from device.vision import commands
from device.vision.pack import load_pack
from tests.test_vision_pack import make_pack, photo, tiny_model


def run(argv: list[str], settings: Settings | None = None, capsys=None) -> int:
    parser = argparse.ArgumentParser(prog="camtrap")
    commands.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args, lambda: settings or Settings())


def _settings(pack: Path, **vision) -> Settings:
    return Settings(vision={"pack": pack, **vision})


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_classify_prints_one_json_object_per_image_and_reports_bad_files_at_the_end(
    tmp_path, capsys
):
    pack = make_pack(tmp_path / "pack")
    images = tmp_path / "imgs"
    images.mkdir()
    photo(images / "a.jpg", seed=1)
    photo(images / "b.png", seed=2)
    (images / "c.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    code = run(["classify", "--json", str(images), str(tmp_path / "missing.jpg")], _settings(pack))
    out = capsys.readouterr()
    lines = _json_lines(out.out)
    assert code == 1
    assert [Path(x["file"]).name for x in lines] == ["a.jpg", "b.png", "c.jpg", "missing.jpg"]
    ok = [x for x in lines if "error" not in x]
    required = {"file", "observation_type", "scientific_name", "common_name", "taxon_level",
                "confidence", "blank_score", "ms"}  # fmt: skip
    assert len(ok) == 2 and all(required <= set(x) for x in ok)
    errors = {Path(x["file"]).name: x["error"] for x in lines if "error" in x}
    assert "cannot decode" in errors["c.jpg"] and "no such file" in errors["missing.jpg"]
    assert "2 file(s) could not be classified" in out.err


def test_classify_validates_the_location_override(tmp_path, capsys):
    pack = make_pack(tmp_path / "pack")
    img = photo(tmp_path / "a.jpg")
    assert run(["classify", str(img), "--country", "KE"], _settings(pack)) == 2
    assert "country" in capsys.readouterr().err
    assert run(["classify", str(img), "--country", "ken"], _settings(pack)) == 0


def test_classify_with_a_broken_pack_or_config_exits_2_with_one_line(tmp_path, capsys):
    pack = make_pack(tmp_path / "pack")
    (pack / "model.tflite").write_bytes(b"x")
    assert run(["classify", str(photo(tmp_path / "a.jpg"))], _settings(pack)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("camtrap classify: model pack") and len(err.splitlines()) == 1

    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers())
    args = parser.parse_args(["classify", str(tmp_path / "a.jpg")])

    def broken_config() -> Settings:
        raise ConfigError("/etc/camtrap/camtrap.toml: vision.threads: bad")

    assert args.func(args, broken_config) == 2
    assert "vision.threads" in capsys.readouterr().err


def test_eval_prints_recall_confusion_sweep_and_writes_a_plot(tmp_path, capsys):
    pack = make_pack(tmp_path / "pack")
    data = tmp_path / "data"
    data.mkdir()
    rows = ["file,label,species"]
    for i, label in enumerate(["animal", "animal", "blank", "blank", "human", "vehicle"]):
        photo(data / f"{i}.jpg", seed=i)
        rows.append(f"{i}.jpg,{label},{'leopard' if i == 0 else ''}")
    (data / "labels.csv").write_text("\n".join(rows) + "\n")
    code = run(
        [
            "eval",
            str(data),
            "--labels",
            str(data / "labels.csv"),
            "--plot",
            str(tmp_path / "pr.png"),
        ],
        _settings(pack),
    )
    out = capsys.readouterr().out
    assert code == 0
    for needle in ("animal recall:", "blanks removed:", "precision", "confusion", "species top-1",
                   "threshold sweep", "<- configured"):  # fmt: skip
        assert needle in out
    assert "(scored 1;" in out  # leopard is a species this pack knows
    with Image.open(tmp_path / "pr.png") as im:
        assert im.format == "PNG" and im.size[0] > 100


def test_eval_refuses_a_bad_labels_file(tmp_path, capsys):
    pack = make_pack(tmp_path / "pack")
    (tmp_path / "labels.csv").write_text("file,label\nx.jpg,cat\n")
    with pytest.raises(UserError) as err:
        run(["eval", str(tmp_path)], _settings(pack))
    assert err.value.code == Exit.DATA_ERROR
    assert "label 'cat' is not one of" in err.value.message


def _automl_export(tmp_path: Path, labels: list[str], kind: str = "uint8") -> Path:
    export = tmp_path / "export"
    export.mkdir()
    shutil.copy(tiny_model(kind), export / "model.tflite")
    (export / "dict.txt").write_text("\n".join(labels) + "\n")
    (export / "tflite_metadata.json").write_text(
        json.dumps(
            {
                "inferenceType": "QUANTIZED_UINT8",
                "inputShape": [1, 32, 32, 3],
                "outputShape": [1, len(labels)],
                "batchSize": 1,
            }
        )
    )
    return export


def test_model_import_turns_an_automl_export_into_a_pack_that_classifies(tmp_path, capsys):
    export = _automl_export(tmp_path, ["ocelot", "blank", "human", "vehicle"])
    out = tmp_path / "packs" / "ocelot-v1"
    assert run(["model", "import", str(export), "--out", str(out), "--name", "ocelots",
                "--version", "2.0.0"]) == 0  # fmt: skip
    pack = load_pack(out)
    assert pack.classified_by == "ocelots@2.0.0"
    assert [t.kind for t in pack.taxa] == ["animal", "blank", "human", "vehicle"]
    assert pack.manifest["model"]["preprocess"]["resize"] == "squash"
    # raw pixels feed the uint8 input: mean = zero point, std = 1 / scale
    assert pack.mean == (127.0,) * 3 and pack.std == pytest.approx((128.0,) * 3)
    capsys.readouterr()
    img = photo(tmp_path / "a.jpg")
    assert run(["classify", "--json", str(img)], _settings(out)) == 0
    line = _json_lines(capsys.readouterr().out)[0]
    assert {t["label"] for t in line["top"]} <= {"ocelot", "blank", "human", "vehicle"}


def test_model_import_refuses_a_label_count_mismatch_and_leaves_nothing(tmp_path, capsys):
    export = _automl_export(tmp_path, ["a", "b", "c"])
    out = tmp_path / "pack"
    assert run(["model", "import", str(export), "--out", str(out)]) == 2
    assert "dict.txt has 3 labels but the model outputs 4" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".pack-*"))
    (export / "dict.txt").unlink()
    assert run(["model", "import", str(export), "--out", str(out)]) == 2
    assert "missing dict.txt" in capsys.readouterr().err


def test_model_info_describes_a_pack_and_verifies_it(tmp_path, capsys):
    pack = make_pack(tmp_path / "pack", "int8")
    assert run(["model", "info", str(pack), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["classified_by"] == "tiny-int8@1.2.3"
    assert info["input"]["dtype"] == "int8" and info["input"]["shape"] == [1, 32, 32, 3]
    assert info["labels"] == 4 and info["kinds"] == {"animal": 2, "human": 1, "object": 1}
    assert info["checksums"] == "ok" and info["signed"] is False
    (pack / "labels.txt").write_text("changed\n")
    assert run(["model", "info", str(pack)]) == 2
    assert "labels.txt" in capsys.readouterr().err


def test_images_in_odd_modes_are_classified_not_rejected(tmp_path, capsys):
    pack = make_pack(tmp_path / "pack")
    rgb = np.random.default_rng(0).integers(0, 255, (60, 80, 3), np.uint8)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray(rgb).convert("L").save(tmp_path / "grey.jpg")
    assert run(["classify", "--json", str(tmp_path / "cmyk.jpg"), str(tmp_path / "grey.jpg")],
               _settings(pack)) == 0  # fmt: skip
    assert len(_json_lines(capsys.readouterr().out)) == 2
