"""Vision benchmarks: bare invoke, the full per-frame path against it, multi-crop, pack load.

Inputs are frames from the project's own synthetic scene generator (never the dev photos).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from device.config import DEFAULT_PACK_DIR, LocationSection, VisionSection
from device.hardware.scene import SceneRenderer, encode_jpeg, lores_luma, plan_scene
from device.vision.engine import EventFrame, VisionEngine
from device.vision.preprocess import crop_resize, full_box, load_image
from tests.bench.common import emit, median

REPS = 40


def _scene(index: int = 0, size=(1280, 720)):
    plan = next(plan_scene(3, i) for i in range(index, index + 50) if plan_scene(3, i).sprite)
    renderer = SceneRenderer(plan, size)
    return [renderer.render(i).image for i in range(3)]


def _ms(fn, reps: int = REPS) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return median(times)


def main() -> None:
    vision = VisionSection(threads=1)
    location = LocationSection(country="KEN")
    loads = []
    for _ in range(5):
        start = time.perf_counter()
        engine = VisionEngine.load(DEFAULT_PACK_DIR, vision, location)
        loads.append((time.perf_counter() - start) * 1000)
    emit("model_load_ms", median(loads), "ms")

    frames = _scene()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f0.jpg"
        path.write_bytes(encode_jpeg(frames[0], 90))
        # With one crop, the JPEG is decoded at the scale that crop needs (tiles need more).
        one_side = min(engine.model.input_size)
        image = load_image(path, one_side)
        tiled_image = load_image(path, engine.min_short_side())
        emit("vision_decode_ms", _ms(lambda: load_image(path, one_side)), "ms")
        emit("vision_decode_tiles_ms", _ms(lambda: load_image(path, engine.min_short_side())), "ms")
        lores = [lores_luma(f, (320, 240)) for f in frames]
        box = full_box(image.size, engine.pack.resize, engine.model.input_size)
        batch = engine.encoder.encode(crop_resize(image, box, engine.model.input_size))
        model = engine.model

        def bare() -> None:
            for _ in frames:
                model.set_input(batch)
                model.invoke()

        def full_path() -> None:
            # A 3-frame burst: motion once for the burst, then per frame preprocess + classify
            # + blank score + geofence/rollup on the one full-frame crop. Divided per frame.
            motions = engine.motion.burst(lores)
            for motion in motions:
                engine.analyse(image, motion, "m", crops=[("full", box)])

        def multi_crop() -> None:
            motion = engine.motion.burst(lores)[0]
            engine.analyse(tiled_image, motion, "m")

        for fn in (bare, full_path, multi_crop):
            fn()  # warm caches
        bare_times, full_times = [], []
        for _ in range(REPS):  # interleaved, so machine noise hits both alike
            bare_times.append(_ms(bare, 1))
            full_times.append(_ms(full_path, 1))
        invoke = median(bare_times) / len(frames)
        per_frame = median(full_times) / len(frames)
        emit("invoke_ms", invoke, "ms")
        emit("vision_full_path_ms", per_frame, "ms")
        emit("vision_overhead_ratio", per_frame / invoke, "x")
        crops = len(engine.crops_for(tiled_image.size, engine.motion.burst(lores)[0]))
        emit("vision_multicrop_ms", _ms(multi_crop), "ms")
        emit("vision_multicrop_crops", crops, "crops")

        paths = []
        for i, frame in enumerate(frames):
            p = Path(tmp) / f"e{i}.jpg"
            p.write_bytes(encode_jpeg(frame, 90))
            paths.append(EventFrame(f"m{i}", p, lores[i]))
        emit("vision_event_ms", _ms(lambda: engine.classify_event(paths), 10), "ms")


if __name__ == "__main__":
    main()
