"""Building blocks for tests that need a trap: settings in a temp dir, real JPEG files."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from device.config import Settings
from tests.support.ports import reserve_port


def trap_settings(root: Path, **sections: dict[str, Any]) -> Settings:
    """Settings for a simulated trap living entirely under ``root``, and nowhere else.

    The uplink is off (``transport = "none"``), and its MQTT endpoint is still a loopback port
    reserved for this test that nobody listens on, so a test that switches the transport on
    without naming its broker reaches nothing outside its world. OTA is off unless the test
    passes an ``ota`` section (then on, unless that section says ``enabled``). A section the
    test passes replaces these keys one level deep, as before (``uplink={"mqtt": {...}}``
    replaces the whole mqtt table).
    """
    data: dict[str, Any] = {
        "device": {"id": "test-trap", "deployment_id": "dep-1"},
        "storage": {
            "data_dir": root / "data",
            "fallback_dir": root / "fallback",
            "probe_interval_s": 0.2,
        },
        "pir": {"pin_factory": "mock", "sample_rate": 100.0},
        "camera": {"backend": "synthetic", "main_size": (320, 240), "lores_size": (80, 60)},
        "capture": {
            "burst_frames": 3,
            "burst_interval_s": 0.02,
            "max_burst_frames": 6,
            "cooldown_s": 0.05,
            "timelapse_interval_s": 0,
        },
        # Classification is switched on by the tests about it; elsewhere it would only
        # slow tests down and turn blank test frames into thumbnails.
        "vision": {"enabled": False},
        "clock": {
            "timesync_flag": root / "no-timesync",
            "rtc_device": root / "no-rtc",
            "manual_marker": root / "no-manual",
            "kernel_status": False,
        },
        "uplink": {
            "transport": "none",
            "mqtt": {"host": "127.0.0.1", "port": reserve_port(), "connect_timeout_s": 2},
        },
        "ota": {"enabled": "ota" in sections},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    (root / "data").mkdir(parents=True, exist_ok=True)
    return Settings(**data)


def jpeg_bytes(width: int = 160, height: int = 120, seed: int = 0, mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def write_jpegs(directory: Path, count: int, **kwargs: Any) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = directory / f"frame{i:04d}.jpg"
        path.write_bytes(jpeg_bytes(seed=i, **kwargs))
        paths.append(path)
    return paths


@pytest.fixture
def mock_pins():
    """gpiozero's own MockFactory, reset after the test so pins do not leak between tests."""
    from gpiozero import Device

    from device.hardware.pir import use_mock_pins

    use_mock_pins()
    yield Device.pin_factory
    Device.pin_factory.reset()
