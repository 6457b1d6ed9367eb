"""The checklist a technician reads at the tree: each line PASS, FAIL or SKIP, with the reason.

Every check runs the agent's own parts (camera backend, PIR sensor, IR output, store, vision,
MQTT link) with the configuration about to be written, so a pass means the service will work.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from device.config import Settings

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str

    def line(self) -> str:
        return f"[{self.status}] {self.name}: {self.detail}"


def sharpness(luma: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian: higher is crisper. Compare frames, not absolutes."""
    y = luma.astype(np.float32)
    lap = -4 * y[1:-1, 1:-1] + y[:-2, 1:-1] + y[2:, 1:-1] + y[1:-1, :-2] + y[1:-1, 2:]
    return float(lap.var())


def check_camera(settings: Settings) -> Check:
    from device.hardware.camera import open_camera

    name = "camera frame"
    try:
        camera = open_camera(settings.camera)
        camera.start()
        try:
            frame = camera.capture()
        finally:
            camera.close()
    except Exception as exc:  # any backend failure is the camera's failure here
        return Check(name, FAIL, f"no frame: {exc}")
    if frame.error or not frame.jpeg or frame.lores is None:
        return Check(name, FAIL, f"bad frame: {frame.error or 'empty image'}")
    brightness = float(frame.lores.mean())
    score = sharpness(frame.lores)
    hint = ""
    if brightness < 15:
        hint = " (very dark: lens cap? night?)"
    elif brightness > 240:
        hint = " (washed out: facing the sun?)"
    return Check(
        name,
        PASS,
        f"{frame.width}x{frame.height}, brightness {brightness:.0f}/255, "
        f"sharpness {score:.0f} (refocus until this number peaks){hint}",
    )


def check_pir(settings: Settings, timeout_s: float, say: Callable[[str], None]) -> Check:
    from device.hardware.pir import PirSensor

    name = "PIR trigger"
    if timeout_s <= 0:
        return Check(name, SKIP, "PIR wait switched off (--pir-timeout 0)")
    seen = threading.Event()
    try:
        sensor = PirSensor(settings.pir, seen.set)
    except Exception as exc:
        return Check(name, FAIL, f"GPIO {settings.pir.pin} unusable: {exc}")
    try:
        say(f"  wave your hand in front of the sensor (waiting up to {timeout_s:.0f} s)")
        triggered = seen.wait(timeout_s)
    finally:
        sensor.close()
    if triggered:
        return Check(name, PASS, f"motion seen on GPIO {settings.pir.pin}")
    return Check(
        name, FAIL, f"no trigger on GPIO {settings.pir.pin} within {timeout_s:.0f} s (wiring?)"
    )


def check_ir(settings: Settings) -> Check:
    name = "IR LED"
    if settings.ir.pin is None:
        return Check(name, SKIP, "no IR LED pin configured")
    from gpiozero import DigitalOutputDevice

    if settings.pir.pin_factory == "mock":
        from device.hardware.pir import use_mock_pins

        use_mock_pins()
    try:
        led = DigitalOutputDevice(settings.ir.pin, initial_value=False)
    except Exception as exc:
        return Check(name, FAIL, f"GPIO {settings.ir.pin} unusable: {exc}")
    try:
        led.on()
        was_on = bool(led.value)
        led.off()
        now_off = not led.value
    finally:
        led.close()
    if was_on and now_off:
        return Check(
            name, PASS, f"GPIO {settings.ir.pin} switched on and off (a phone camera sees the glow)"
        )
    return Check(name, FAIL, f"GPIO {settings.ir.pin} did not follow on/off")


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk(settings: Settings) -> Check:
    data_dir = settings.storage.data_dir
    try:
        free = shutil.disk_usage(_existing(data_dir)).free
    except OSError as exc:
        return Check("free disk", FAIL, f"{data_dir}: {exc.strerror}")
    need = settings.storage.min_free_bytes
    detail = f"{free / 1e9:.2f} GB free at {data_dir} (retention keeps {need / 1e9:.2f} GB)"
    return Check("free disk", PASS if free > need else FAIL, detail)


def check_pipeline(settings: Settings, scratch: Path) -> Check:
    """One trigger through capture, classification, store and outbox, in a scratch data dir
    (so no test photo is ever uploaded as if an animal had passed)."""
    from device.agent import Agent
    from device.simulate import store_stats
    from device.store.store import DB_NAME

    name = "capture pipeline"
    shutil.rmtree(scratch, ignore_errors=True)
    data = settings.model_dump()
    data["storage"].update(data_dir=scratch / "data", fallback_dir=scratch / "fallback")
    data["capture"].update(timelapse_interval_s=0, burst_frames=1)
    data["uplink"]["transport"] = "none"  # queued, never sent: the broker check is separate
    trial = Settings.model_validate(data)
    (scratch / "data").mkdir(parents=True, exist_ok=True)
    try:
        agent = Agent(trial)
        agent.start()
        try:
            agent.capture.trigger("test")
            agent.capture.wait_idle(timeout=30)
            if agent.vision is not None:
                _wait_classified(agent, scratch / "data" / DB_NAME)
        finally:
            agent.stop()
        stats = store_stats(scratch / "data" / DB_NAME)
    except Exception as exc:
        return Check(name, FAIL, f"{type(exc).__name__}: {exc}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    problems = []
    if stats["stored"] < 1:
        problems.append("no frame stored")
    if trial.vision.enabled and stats["classified"] < 1:
        problems.append("event not classified (model pack?)")
    if stats["outbox_pending"] < 1:
        problems.append("nothing queued for upload")
    kinds = [k for k in ("animals", "blanks", "humans", "vehicles") if stats[k]]
    detail = (
        f"{stats['events']} event, {stats['stored']} frame stored, "
        f"classified: {', '.join(kinds) or 'no'}, {stats['outbox_pending']} items queued"
    )
    if problems:
        return Check(name, FAIL, f"{'; '.join(problems)} ({detail})")
    return Check(name, PASS, detail)


def _wait_classified(agent, db_path: Path, timeout: float = 60.0) -> None:
    """The event closes after the burst; give vision time to receive and classify it."""
    import time

    from device.store.db import open_readonly
    from device.store.events import Events
    from device.store.vocabulary import EventState

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        agent.vision.wait_idle(timeout=1.0)
        if db_path.exists():
            conn = open_readonly(db_path)
            try:
                done = Events(conn).count_by_state().get(EventState.CLASSIFIED, 0)
            finally:
                conn.close()
            if done:
                return
        time.sleep(0.1)


def check_broker(settings: Settings, offline: bool) -> Check:
    from device.uplink.mqtt import MqttTransport

    cfg = settings.uplink.mqtt
    name = "broker connection"
    if offline:
        return Check(name, SKIP, "--offline: no network at this site; uploads wait in the queue")
    if settings.uplink.transport != "mqtt":
        return Check(name, SKIP, f"uplink transport is {settings.uplink.transport}")
    try:
        link = MqttTransport.from_settings(settings)
        try:
            link.connect(timeout=min(cfg.connect_timeout_s, 15.0))
        finally:
            link.close()
    except Exception as exc:
        return Check(name, FAIL, f"{cfg.host}:{cfg.port} unreachable or refused us: {exc}")
    return Check(name, PASS, f"TLS session with {cfg.host}:{cfg.port} as {settings.device.id}")
