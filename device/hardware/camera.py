"""The camera interface: one frame = an encoded full-resolution JPEG + a small luma plane.

Backends:
- ``picamera2``: the Pi camera; frames come from the running stream.
- ``replay``: JPEG files from a directory, in name order, looping.
- ``synthetic``: generated scenes (background, an animal crossing, light and noise changes).

The camera runs from ``start`` to ``stop`` (the power profile decides how long: always, or
only around events, docs/power.md); ``start`` after ``stop`` resumes without reconfiguring,
and ``close`` releases it for good. Backends are imported lazily so that ``picamera2`` (which
only exists on a Pi) is never imported elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from device.hardware import HardwareUnavailable

if TYPE_CHECKING:
    from device.config import CameraSection


@dataclass(frozen=True)
class Frame:
    """What a camera hands to the capture loop.

    ``jpeg`` is stored as it came (it may be empty or corrupt: the store records such frames
    as failed media). ``lores`` is the analysis plane: luma, shape (h, w), uint8, or None when
    the backend could not produce one.
    """

    jpeg: bytes
    lores: np.ndarray | None
    width: int
    height: int
    error: str | None = None
    meta: dict[str, object] = field(default_factory=dict)


class CameraError(RuntimeError):
    """The camera could not deliver a frame at all (as opposed to delivering a bad one)."""


class CameraUnavailable(CameraError, HardwareUnavailable):
    """The camera cannot be opened at all: no camera stack, no camera, a missing directory."""


class Camera(Protocol):
    def start(self) -> None:
        """Bring the camera to a running state (configured the first time only); later
        captures must not reconfigure it. A no-op while it runs."""

    def stop(self) -> None:
        """Stop streaming (the sensor idles), keeping the configuration for the next
        ``start``. A no-op while stopped."""

    def capture(self) -> Frame:
        """One frame from the running stream."""

    def capture_lores(self) -> np.ndarray | None:
        """The analysis plane of the next frame only (no JPEG encoded): the light decisions
        between events."""

    def close(self) -> None: ...


def open_camera(section: CameraSection) -> Camera:
    if section.backend == "picamera2":
        from device.hardware.camera_picamera2 import Picamera2Camera

        return Picamera2Camera(section)
    if section.backend == "replay":
        from device.hardware.camera_replay import ReplayCamera

        if section.replay_dir is None:
            raise CameraUnavailable("camera.backend is 'replay' but camera.replay_dir is not set")
        return ReplayCamera(section.replay_dir, section.lores_size)
    from device.hardware.camera_synthetic import SyntheticCamera

    return SyntheticCamera(section)
