"""Agent core benchmarks: PIR-to-capture latency, store commit rate, agent peak RSS."""

from __future__ import annotations

import os
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from device.capture.loop import CaptureLoop
from device.capture.types import ACTIVITY, CapturedFrame, EventClosed
from device.clock import ClockProbe, ClockState
from device.hardware.camera import Frame
from device.hardware.camera_replay import ReplayCamera
from device.hardware.pir import PirSensor, use_mock_pins
from device.hardware.scene import write_dataset
from device.store.store import MediaStore
from tests.bench.common import ROOT, emit, median, p95, peak_rss_mb
from tests.support.world import trap_settings

TRIGGERS = 40


def scene_frames(directory: Path) -> Path:
    """A few synthetic 1280x720 scene frames (JPEG q90), made by the project's own generator."""
    write_dataset(directory, n_scenes=2, seed=7, frames_per_scene=2, size=(1280, 720))
    return directory


def pir_to_capture(tmp: Path) -> None:
    """PIR edge (mock pin driven high) to the first frame handed to the store's queue."""
    frames_dir = scene_frames(tmp / "frames")
    settings = trap_settings(
        tmp,
        camera={"backend": "replay", "replay_dir": frames_dir, "lores_size": (320, 240)},
        capture={"burst_frames": 1, "cooldown_s": 0.0},
    )
    use_mock_pins()
    camera = ReplayCamera(frames_dir, (320, 240))
    camera.start()
    first_frame_at: dict[str, float] = {}
    got_one = threading.Event()

    def sink(item: CapturedFrame | EventClosed) -> None:
        if isinstance(item, CapturedFrame) and item.seq == 0:
            first_frame_at[item.event_id] = time.perf_counter()
            got_one.set()

    loop = CaptureLoop(settings, camera, sink, ClockProbe(settings.clock))
    loop.start()
    pir = PirSensor(settings.pir, lambda: loop.trigger("pir"))
    pin = pir.mock_pin()
    latencies: list[float] = []
    camera_ms: list[float] = []
    try:
        for _ in range(TRIGGERS):
            got_one.clear()
            before = len(first_frame_at)
            start = time.perf_counter()
            pin.drive_high()
            if not got_one.wait(5):
                raise RuntimeError("a PIR edge produced no frame within 5 s")
            latencies.append((time.perf_counter() - start) * 1000)
            assert len(first_frame_at) == before + 1
            pin.drive_low()
            loop.wait_idle(5)
            time.sleep(2.5 / settings.pir.sample_rate)  # let the sensor see the low level
        for _ in range(20):
            t = time.perf_counter()
            camera.capture()
            camera_ms.append((time.perf_counter() - t) * 1000)
    finally:
        pir.close()
        loop.stop(5)
    # pir.detect = "edge" (the default): the interrupt has no smoothing window, the delay is 0;
    # "sampled" waits about queue_len / sample_rate before it calls the edge motion.
    delay_ms = pir.detection_delay_s * 1000
    beyond = [lat - delay_ms for lat in latencies]
    print(f"# pir: detect = {settings.pir.detect}")
    emit("pir_to_capture_ms_median", median(latencies), "ms")
    emit("pir_to_capture_ms_p95", p95(latencies), "ms")
    emit("pir_detection_delay_configured_ms", delay_ms, "ms")
    emit("pir_to_capture_beyond_detection_ms_median", median(beyond), "ms")
    emit("pir_to_capture_beyond_detection_ms_p95", p95(beyond), "ms")
    emit("replay_camera_capture_ms_median", median(camera_ms), "ms")


def commit_rate(tmp: Path) -> None:
    """Frames per second the store commits with fsync, a burst (3 frames) per transaction."""
    settings = trap_settings(tmp)
    store = MediaStore(settings)
    store.open()
    jpeg = sorted(scene_frames(tmp / "frames").glob("*.jpg"))[0].read_bytes()
    lores = np.zeros((60, 80), np.uint8)

    def item(event_id: str, seq: int) -> CapturedFrame:
        return CapturedFrame(
            event_id=event_id,
            media_id=str(uuid.uuid4()),
            seq=seq,
            captured_at=datetime.now(UTC),
            captured_mono=time.monotonic(),
            trigger_mono=None,
            capture_method=ACTIVITY,
            trigger_source="pir",
            clock=ClockState("ntp", True),
            ir_on=False,
            frame=Frame(jpeg, lores, 1280, 720),
        )

    try:
        for batch, label in ((3, "capture_commit_per_s"), (1, "capture_commit_single_per_s")):
            frames = 0
            start = time.perf_counter()
            for _ in range(60 // batch * 2):
                event_id = str(uuid.uuid4())
                items = [item(event_id, s) for s in range(batch)]
                store.commit([*items, EventClosed(event_id, datetime.now(UTC), batch, ACTIVITY)])
                frames += batch
            emit(label, frames / (time.perf_counter() - start), "frames/s")
        emit("bench_frame_jpeg_kb", len(jpeg) / 1024, "KB")
    finally:
        store.close()


def agent_rss(tmp: Path) -> None:
    """Peak RSS of `camtrap simulate` (the issue's figure: default config, synthetic camera),
    then the same agent with the replay camera, which like the Pi camera hands over encoded
    frames (no scene renderer in the process), then the import floor under both."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMTRAP_")}
    frames = scene_frames(tmp / "frames")
    runs = (
        ("agent_rss_mb", "false", []),
        ("agent_rss_mb_with_model", "true", []),
        ("agent_rss_mb_replay_camera", "false", ["--images", str(frames)]),
        ("agent_rss_mb_with_model_replay_camera", "true", ["--images", str(frames)]),
    )
    for name, vision, extra in runs:
        config = tmp / f"{name}.toml"
        config.write_text(f"[vision]\nenabled = {vision}\n")
        env["CAMTRAP_CONFIG"] = str(config)
        args = ["device.cli", "simulate", "--triggers", "5", "--data-dir", str(tmp / name)]
        rss, code = peak_rss_mb([*args, *extra], env)
        if code != 0:
            raise RuntimeError(f"camtrap simulate exited {code}")
        emit(name, rss, "MB")
    base, _ = peak_rss_mb(["tests.bench.import_floor"], env)
    emit("agent_import_floor_rss_mb", base, "MB")


def main() -> None:
    os.chdir(ROOT)
    for bench in (pir_to_capture, commit_rate, agent_rss):
        with tempfile.TemporaryDirectory(prefix="camtrap-bench-") as tmp:
            bench(Path(tmp))


if __name__ == "__main__":
    main()
