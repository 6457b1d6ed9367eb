"""``camtrap-cloud train`` benchmarks: the size of a 50-class head update, fitting a head on
10,000 cached embeddings, embedding speed on the cloud side, and the head's AUC against the
ImageNet-sum baseline on held-out synthetic events.

Inputs are the project's own synthetic scenes (device/hardware/scene.py). The 10,000
embeddings for ``train_10k_s`` are real embeddings of synthetic frames by the default pack,
replicated with seeded noise into 50 classes (the scene generator draws two species; for
timing a fit, what matters is the number of rows, features and classes).
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script: python tests/bench/bench_training.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cloud_stub.cli import main as cloud_main
from cloud_stub.training.cache import EmbeddingCache
from cloud_stub.training.classes import BLANK, animal
from cloud_stub.training.embeddings import Embedder
from cloud_stub.training.features import features_for
from cloud_stub.training.fit import fit_head
from cloud_stub.training.golden import GOLDEN_QUALITY, Golden
from cloud_stub.training.pack_writer import write_head_pack
from device.config import CameraSection
from device.contracts.head import HeadWeights
from device.contracts.pack import DEFAULT_PACK_DIR, read_pack
from device.contracts.recall import Scored, calibrate
from device.hardware.scene import SceneRenderer, encode_jpeg, plan_scene
from tests.bench.common import emit
from tests.support.training_world import labelled_folder

# The held-out synthetic split of tests/test_training_synthetic.py (seed 3), twice as large.
AUC_SEED, AUC_BURSTS = 3, 400
CLASSES, ROWS = 50, 10_000
EMBED_FRAMES = 60


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def bench_auc(tmp: Path) -> dict[str, Any]:
    labels = labelled_folder(tmp / "scenes", AUC_BURSTS, AUC_SEED)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cloud_main(
            ["train", "--images", str(tmp / "scenes"), "--labels", str(labels),
             "--out", str(tmp / "head"), "--cache", str(tmp / "cache"), "--json", "--force"]
        )  # fmt: skip
    if code != 0:
        raise RuntimeError(err.getvalue())
    report = json.loads(out.getvalue())
    blank = report["blank_filter"]
    emit("head_auc_synthetic", blank["head"]["auc"], "auc")
    emit("baseline_auc_synthetic", blank["serving"]["auc"], "auc")
    print(
        f"bench-info embedding during that run: {report['images']['embed_per_s']:.1f} "
        "images/s (480x270 JPEGs)",
        flush=True,
    )
    print(
        f"bench-info synthetic split: seed {AUC_SEED}, {AUC_BURSTS} bursts x 3 frames at "
        f"480x270, {blank['measured_on']}: {blank['head']['n_blank']} blank / "
        f"{blank['head']['n_not_blank']} not-blank events; verdict {report['verdict']}",
        flush=True,
    )
    return report


def bench_embed(tmp: Path) -> None:
    """The Embedder over trap-sized JPEGs (decode, info bar, crop, invoke), nothing cached."""
    size = CameraSection().main_size
    folder = tmp / "trap-size"
    folder.mkdir()
    paths = []
    for k in range(EMBED_FRAMES // 3):
        renderer = SceneRenderer(plan_scene(9, k), size)
        for i in range(3):
            path = folder / f"s{k:03d}_{i}.jpg"
            path.write_bytes(encode_jpeg(renderer.render(i).image, 88))
            paths.append(path)
    cache = EmbeddingCache(tmp / "embed-cache")
    try:
        features = features_for(paths, Embedder(read_pack(DEFAULT_PACK_DIR)), cache)
    finally:
        cache.close()
    emit("embed_per_s", features.embed_per_s or 0.0, "images/s")
    print(
        f"bench-info embed_per_s: {features.embedded_now} JPEGs of {size[0]}x{size[1]}, "
        "2 interpreter threads, 2 decode threads",
        flush=True,
    )


def _replicated(real: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """ROWS embeddings in CLASSES classes: class k is real frame k's embedding plus seeded
    noise of half each feature's spread over the real frames (clipped at 0, like the
    backbone's ReLU6 features)."""
    rng = np.random.default_rng(seed)
    prototypes = real[rng.choice(len(real), CLASSES, replace=False)]
    spread = real.std(axis=0) * 0.5
    y = np.arange(ROWS) % CLASSES
    x = prototypes[y] + rng.normal(size=(ROWS, real.shape[1])) * spread
    return np.clip(x, 0, None).astype(np.float32), y


def bench_fit_and_size(tmp: Path, report: dict[str, Any]) -> None:
    cache = EmbeddingCache(tmp / "cache")
    try:
        rows = cache.db.execute("SELECT embedding FROM features").fetchall()
    finally:
        cache.close()
    real = np.stack([np.frombuffer(r[0], np.float32) for r in rows])
    x, y = _replicated(real, seed=1)
    fitted = fit_head(x, y, CLASSES, c=1.0, storage="int8", seed=0)
    emit("train_10k_s", fitted.seconds, "s")
    print(
        f"bench-info train_10k_s: {ROWS} embeddings x {x.shape[1]} features, {CLASSES} classes "
        f"(real embeddings of {len(real)} synthetic frames, replicated with noise), "
        f"{fitted.iterations} lbfgs iterations, converged {fitted.converged}",
        flush=True,
    )

    # A 50-class head pack as the trainer writes it, with its provenance, calibration and two
    # golden crops; the update a trap downloads is every file plus the manifest.
    backbone = read_pack(DEFAULT_PACK_DIR)
    classes = [BLANK] + [
        animal(f"Species {k:02d}", f"species {k:02d}", f"mammalia;order{k};family{k};genus{k};sp")
        for k in range(1, CLASSES)
    ]
    embedder = Embedder(backbone)
    crops = [embedder.crop(p) for p in sorted((tmp / "scenes").glob("b00[0-1]_f1.jpg"))]
    golden = [
        Golden(f"golden/{k}.jpg", _jpeg(crop), classes[k].display, 3, f"b00{k}_f1.jpg")
        for k, crop in enumerate(crops)
    ]
    items = [Scored(float(s), bool(k % 3)) for k, s in enumerate(np.linspace(0, 1, 300))]
    now = datetime(2026, 12, 1, tzinfo=UTC)
    calibration = calibrate(items, name="validation part of bench", level="event", created=now)
    n = {"train": 300, "train_used": 200, "validation": 60, "test": 60}
    training = {
        "trainer": "camtrap-cloud train (bench)",
        "source": report["source"],
        "event_rule": report["event_rule"],
        "split": report["split"],
        "classes": {c.display: n for c in classes},
        "seed": 0,
        "c": 1.0,
        "backbone_sha256": backbone.manifest.model_sha256,
        "metrics": report["blank_filter"],
        "forced": False,
    }

    def written(head: HeadWeights, name: str) -> Path:
        return write_head_pack(
            tmp / name,
            name="head-bench-50",
            version="1.0.0",
            created=now,
            backbone=backbone,
            classes=classes,
            head=head,
            calibration=calibration,
            blank_threshold=None,
            golden=golden,
            training=training,
            description="a 50-class head for the size benchmark",
        )

    pack = written(fitted.head, "head-50")
    head_bytes = _dir_bytes(pack)
    full_bytes = _dir_bytes(DEFAULT_PACK_DIR)
    emit("head_update_bytes", head_bytes, "bytes")
    emit("head_update_vs_full_pack_ratio", full_bytes / head_bytes, "x")
    files = {p.name: p.stat().st_size for p in sorted(pack.rglob("*")) if p.is_file()}
    print(f"bench-info head_update_bytes: the 50-class int8 head fitted above, files {files}; "
          f"full default pack {full_bytes} bytes", flush=True)  # fmt: skip
    # Synthetic frames leave many of the 1280 features at zero, so that head's weights
    # compress well. A head on real photos uses every feature: the worst case is int8 weights
    # with nothing to compress (Gaussian, every row at full scale).
    rng = np.random.default_rng(2)
    dense = HeadWeights.fit_float(rng.normal(size=(CLASSES, x.shape[1])), np.zeros(CLASSES))
    dense_bytes = _dir_bytes(written(dense, "head-50-dense"))
    emit("head_update_bytes_dense", dense_bytes, "bytes")
    emit("head_update_vs_full_pack_ratio_dense", full_bytes / dense_bytes, "x")


def _jpeg(crop: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(crop).save(out, format="JPEG", quality=GOLDEN_QUALITY)
    return out.getvalue()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="camtrap-bench-training-") as name:
        tmp = Path(name)
        started = time.perf_counter()
        report = bench_auc(tmp)
        bench_embed(tmp)
        bench_fit_and_size(tmp, report)
        print(f"bench-info bench_training took {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
