"""The picamera2 backend configures the camera once and captures from the running stream.

Why a stand-in: picamera2 needs libcamera and a camera module, which exist only on a Pi (on
x86, ``import picamera2`` fails). So these tests put a small stand-in ``picamera2`` module into
``sys.modules`` for the test only. It records the calls the backend makes and hands out
requests shaped like picamera2's (a JPEG written by Pillow with ``options["quality"]``, a
YUV420 lores array of shape (h*3/2, stride)). What they prove is the backend's contract with
that API: one configuration, one start, no mode switches or stops per trigger, every request
released, the Y plane cropped correctly. Behaviour on real hardware is checked on a Pi.
"""

from __future__ import annotations

import io
import sys
import types
from typing import ClassVar

import numpy as np
import pytest
from PIL import Image

from device.config import CameraSection
from device.hardware.camera import CameraError, open_camera
from device.hardware.camera_picamera2 import Picamera2Camera

MAIN = (640, 480)
LORES = (160, 120)
STRIDE = 192  # lores rows padded beyond the width, as the ISP does


class StandInRequest:
    def __init__(self, camera: StandInPicamera2, number: int) -> None:
        self.camera = camera
        self.number = number
        self.released = False

    def save(self, name: str, file_output: io.BytesIO, format: str | None = None) -> None:
        assert name == "main" and format == "jpeg"
        w, h = self.camera.config["main"]["size"]
        pixels = np.full((h, w, 3), (self.number * 40) % 256, np.uint8)
        Image.fromarray(pixels).save(
            file_output, format="JPEG", quality=self.camera.options["quality"]
        )

    def make_array(self, name: str) -> np.ndarray:
        assert name == "lores"
        w, h = self.camera.config["lores"]["size"]
        yuv = np.full((h * 3 // 2, STRIDE), 128, np.uint8)  # chroma and padding: mid grey
        yuv[:h, :w] = (np.arange(w)[None, :] + self.number) % 100  # the Y plane
        yuv[:h, w:] = 255  # padding must not leak into the luma
        return yuv

    def get_metadata(self) -> dict[str, object]:
        return {"ExposureTime": 10000 + self.number, "AnalogueGain": 2.0, "Lux": 300.0}

    def release(self) -> None:
        assert not self.released, "released twice"
        self.released = True


class StandInPicamera2:
    instances: ClassVar[list[StandInPicamera2]] = []

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.options: dict[str, object] = {}
        self.config: dict[str, dict[str, object]] = {}
        self.requests: list[StandInRequest] = []
        self.config_args: dict[str, object] = {}
        StandInPicamera2.instances.append(self)

    def create_still_configuration(self, **kwargs: object) -> dict[str, object]:
        self.calls.append("create_still_configuration")
        self.config_args = kwargs
        return {"main": dict(kwargs["main"]), "lores": dict(kwargs["lores"])}

    def configure(self, config: dict[str, dict[str, object]]) -> None:
        self.calls.append("configure")
        self.config = config

    def start(self) -> None:
        self.calls.append("start")

    def capture_request(self) -> StandInRequest:
        self.calls.append("capture_request")
        request = StandInRequest(self, len(self.requests))
        self.requests.append(request)
        return request

    def switch_mode(self, *args: object, **kwargs: object) -> None:
        self.calls.append("switch_mode")

    def stop(self) -> None:
        self.calls.append("stop")

    def close(self) -> None:
        self.calls.append("close")


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> type[StandInPicamera2]:
    module = types.ModuleType("picamera2")
    module.Picamera2 = StandInPicamera2
    StandInPicamera2.instances = []
    monkeypatch.setitem(sys.modules, "picamera2", module)
    return StandInPicamera2


def section(**overrides: object) -> CameraSection:
    values: dict[str, object] = {"main_size": MAIN, "lores_size": LORES, "jpeg_quality": 77}
    values.update(overrides)
    return CameraSection(**values)


def test_start_configures_main_rgb_and_lores_yuv_once(stand_in) -> None:
    camera = Picamera2Camera(section())
    camera.start()
    cam = stand_in.instances[0]
    assert cam.config_args == {
        "main": {"size": MAIN, "format": "RGB888"},
        "lores": {"size": LORES, "format": "YUV420"},
    }
    assert cam.calls == ["create_still_configuration", "configure", "start"]
    assert cam.options["quality"] == 77


def test_repeated_captures_never_reconfigure_or_stop_the_camera(stand_in) -> None:
    camera = Picamera2Camera(section())
    camera.start()
    camera.start()  # a second start is harmless, not a second configuration
    for _ in range(5):
        camera.capture()
    cam = stand_in.instances[0]
    assert len(stand_in.instances) == 1
    assert cam.calls.count("configure") == 1
    assert cam.calls.count("start") == 1
    assert "switch_mode" not in cam.calls and "stop" not in cam.calls
    assert cam.calls.count("capture_request") == 5
    assert all(request.released for request in cam.requests)


def test_a_frame_is_the_main_jpeg_and_the_lores_y_plane(stand_in) -> None:
    camera = Picamera2Camera(section())
    camera.start()
    camera.capture()
    frame = camera.capture()  # the second request: number 1
    with Image.open(io.BytesIO(frame.jpeg)) as im:
        assert im.format == "JPEG" and im.size == MAIN
    assert (frame.width, frame.height) == MAIN
    expected = np.broadcast_to((np.arange(LORES[0]) + 1) % 100, (LORES[1], LORES[0]))
    assert frame.lores is not None
    assert frame.lores.shape == (LORES[1], LORES[0])
    assert np.array_equal(frame.lores, expected)
    assert frame.lores.flags["C_CONTIGUOUS"]
    assert frame.meta["exposure_us"] == 10001 and frame.meta["lux"] == 300.0


def test_a_quality_change_applies_without_touching_the_stream(stand_in) -> None:
    cam_section = section(jpeg_quality=95)
    camera = Picamera2Camera(cam_section)
    camera.start()
    big = len(camera.capture().jpeg)
    cam_section.jpeg_quality = 15
    small = len(camera.capture().jpeg)
    assert stand_in.instances[0].options["quality"] == 15
    assert stand_in.instances[0].calls.count("configure") == 1
    assert small <= big


def test_a_failing_request_is_released_and_reported(stand_in, monkeypatch) -> None:
    camera = Picamera2Camera(section())
    camera.start()

    def broken_save(self, *args: object, **kwargs: object) -> None:
        raise RuntimeError("dma buffer gone")

    monkeypatch.setattr(StandInRequest, "save", broken_save)
    with pytest.raises(CameraError, match="dma buffer gone"):
        camera.capture()
    assert stand_in.instances[0].requests[0].released


def test_close_stops_and_closes_the_camera(stand_in) -> None:
    camera = Picamera2Camera(section())
    camera.start()
    camera.close()
    assert stand_in.instances[0].calls[-2:] == ["stop", "close"]
    with pytest.raises(CameraError):
        camera.capture()


def test_a_camera_that_fails_to_configure_is_closed_again(stand_in, monkeypatch) -> None:
    def no_sensor(self, config: object) -> None:
        raise RuntimeError("no camera attached")

    monkeypatch.setattr(StandInPicamera2, "configure", no_sensor)
    with pytest.raises(CameraError, match="no camera attached"):
        Picamera2Camera(section()).start()
    assert stand_in.instances[0].calls[-1] == "close"


def test_without_picamera2_the_error_says_what_to_install(monkeypatch) -> None:
    # None in sys.modules makes the import fail, as it does on a machine without libcamera.
    monkeypatch.setitem(sys.modules, "picamera2", None)
    camera = open_camera(section(backend="picamera2"))
    with pytest.raises(CameraError, match="install python3-picamera2 on the Pi"):
        camera.start()
