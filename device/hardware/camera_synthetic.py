"""A camera that films generated scenes (see ``scene.py``), for development without a Pi.

Each trigger is a new scene: a capture that comes more than ``NEW_SCENE_GAP_S`` after the
previous one (monotonic clock) starts the next scene of the seeded sequence; captures closer
together are the following frames of the same burst. ``Frame.meta`` carries the ground truth.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from device.hardware.camera import CameraError, Frame
from device.hardware.scene import SceneRenderer, encode_jpeg, lores_luma, plan_scene, warm_up

if TYPE_CHECKING:
    from device.config import CameraSection


class SyntheticCamera:
    """``start_delay_s`` (0 here) is waited on ``sleep`` at every start after a stop, like a
    real stream start (see ``ReplayCamera``)."""

    NEW_SCENE_GAP_S = 1.0  # longer than any burst interval the simulator uses

    def __init__(self, section: CameraSection, clock: Callable[[], float] = time.monotonic) -> None:
        self.section = section
        self._clock = clock
        self._started = False
        self._last: float | None = None
        self._scene = -1
        self._frame = 0
        self._renderer: SceneRenderer | None = None
        self._warm = False
        self.start_delay_s = 0.0
        self.sleep: Callable[[float], None] = time.sleep

    def start(self) -> None:
        if self._started:
            return
        if self._warm:
            if self.start_delay_s > 0:
                self.sleep(self.start_delay_s)
        else:
            # The first scene's first frame would otherwise pay for building its background.
            first = plan_scene(self.section.synthetic_seed, 0)
            warm_up(self.section.main_size, first.variant)
            self._warm = True
        self._started = True

    def stop(self) -> None:
        self._started = False

    def capture_lores(self) -> np.ndarray | None:
        return self.capture().lores

    def capture(self) -> Frame:
        if not self._started:
            raise CameraError("synthetic camera: capture() while the camera is stopped")
        now = self._clock()
        if self._renderer is None or self._last is None or now - self._last > self.NEW_SCENE_GAP_S:
            self._scene += 1
            self._frame = 0
            plan = plan_scene(self.section.synthetic_seed, self._scene)
            self._renderer = SceneRenderer(plan, self.section.main_size)
        self._last = now
        rendered = self._renderer.render(self._frame)
        plan = self._renderer.plan
        meta: dict[str, object] = {
            "source": "synthetic",
            "truth": rendered.truth,
            "scene": self._scene,
            "frame": self._frame,
            "kind": plan.kind,
        }
        if rendered.species:
            meta["species"] = rendered.species
            meta["bbox"] = rendered.bbox
        self._frame += 1
        width, height = self.section.main_size
        return Frame(
            jpeg=encode_jpeg(rendered.image, self.section.jpeg_quality),
            lores=lores_luma(rendered.image, self.section.lores_size),
            width=width,
            height=height,
            meta=meta,
        )

    def close(self) -> None:
        self._started = False
        self._renderer = None
