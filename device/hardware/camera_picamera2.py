"""The Raspberry Pi camera, through picamera2 (apt's python3-picamera2; it needs libcamera).

The camera is configured once: a mode switch costs 500-700 ms before the first frame, far too
slow for a PIR trigger. ``stop`` and a later ``start`` only stop and restart the stream
(``Picamera2.stop``/``start`` keep the configuration), which is what the low-power profiles
do between events; the first frames after a restart still wait for AE/AGC to settle
(docs/power.md). Every capture takes the next completed request from the
running stream, which holds both streams of the same instant: the full-resolution main stream
(encoded to JPEG in memory) and the YUV420 lores stream, whose first h rows are the luma plane.
"""

from __future__ import annotations

import contextlib
import io
from typing import TYPE_CHECKING, Any

import numpy as np

from device.hardware.camera import CameraError, CameraUnavailable, Frame

if TYPE_CHECKING:
    from device.config import CameraSection

# Metadata keys worth keeping with each frame (exposure decides blur, gain decides noise).
_META_KEYS = {
    "ExposureTime": "exposure_us",
    "AnalogueGain": "analogue_gain",
    "DigitalGain": "digital_gain",
    "Lux": "lux",
    "SensorTimestamp": "sensor_timestamp_ns",
}


def _import_picamera2() -> Any:
    try:
        from picamera2 import Picamera2
    except ImportError as exc:  # also covers picamera2 installed without libcamera (off-Pi)
        raise CameraUnavailable(
            "camera (camera.backend = picamera2): picamera2 is not available: install "
            "python3-picamera2 on the Pi, or set camera.backend to replay or synthetic"
        ) from exc
    return Picamera2


class Picamera2Camera:
    def __init__(self, section: CameraSection) -> None:
        self.section = section
        self._picam2: Any = None
        self._running = False

    def start(self) -> None:
        if self._picam2 is not None:
            if not self._running:
                try:
                    self._picam2.start()
                except Exception as exc:
                    raise CameraError(f"picamera2: restarting the stream failed: {exc}") from exc
                self._running = True
            return
        picamera2_class = _import_picamera2()
        picam2 = None
        try:
            picam2 = picamera2_class()
            config = picam2.create_still_configuration(
                main={"size": tuple(self.section.main_size), "format": "RGB888"},
                # Pi 4 and older can only give a YUV lores stream; its Y plane is all we need.
                lores={"size": tuple(self.section.lores_size), "format": "YUV420"},
            )
            picam2.configure(config)
            picam2.options["quality"] = self.section.jpeg_quality
            picam2.start()
        except Exception as exc:  # libcamera raises many types; all mean "no camera"
            if picam2 is not None:
                # An opened but unconfigured camera stays locked for every other process.
                with contextlib.suppress(Exception):
                    picam2.close()
            raise CameraUnavailable(
                f"camera (camera.backend = picamera2): cannot start the camera: {exc}; check "
                "the ribbon cable and `rpicam-hello --list-cameras`"
            ) from exc
        self._picam2 = picam2
        self._running = True

    def stop(self) -> None:
        if self._picam2 is None or not self._running:
            return
        self._running = False
        try:
            self._picam2.stop()
        except Exception as exc:
            raise CameraError(f"picamera2: stopping the stream failed: {exc}") from exc

    def capture_lores(self) -> np.ndarray | None:
        if self._picam2 is None or not self._running:
            raise CameraError("picamera2: capture_lores() while the camera is stopped")
        lores_w, lores_h = self.section.lores_size
        try:
            yuv = self._picam2.capture_array("lores")
        except Exception as exc:
            raise CameraError(f"picamera2: lores capture failed: {exc}") from exc
        return np.ascontiguousarray(yuv[:lores_h, :lores_w], dtype=np.uint8)

    def capture(self) -> Frame:
        if self._picam2 is None or not self._running:
            raise CameraError("picamera2: capture() while the camera is stopped")
        # quality is a remote setting: apply a change without touching the running stream.
        self._picam2.options["quality"] = self.section.jpeg_quality
        lores_w, lores_h = self.section.lores_size
        try:
            request = self._picam2.capture_request()
        except Exception as exc:
            raise CameraError(f"picamera2: capture failed: {exc}") from exc
        try:
            buf = io.BytesIO()
            request.save("main", buf, format="jpeg")
            yuv = request.make_array("lores")
            # Rows may be padded to the stride: crop to the real width, and copy because the
            # buffer goes back to the camera on release.
            luma = np.ascontiguousarray(yuv[:lores_h, :lores_w], dtype=np.uint8)
            metadata = request.get_metadata()
        except Exception as exc:
            raise CameraError(f"picamera2: reading the request failed: {exc}") from exc
        finally:
            request.release()
        meta: dict[str, object] = {"source": "picamera2"}
        for key, name in _META_KEYS.items():
            if key in metadata:
                meta[name] = metadata[key]
        width, height = self.section.main_size
        return Frame(jpeg=buf.getvalue(), lores=luma, width=width, height=height, meta=meta)

    def close(self) -> None:
        picam2, self._picam2 = self._picam2, None
        running, self._running = self._running, False
        if picam2 is None:
            return
        try:
            if running:
                picam2.stop()
        finally:
            picam2.close()
