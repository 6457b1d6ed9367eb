"""What the capture loop hands to the store: the narrow door between the two rooms."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from device.clock import ClockState
from device.contracts.protocol import CaptureMethod, TriggerSource
from device.hardware.camera import Frame

ACTIVITY: Final[CaptureMethod] = "activityDetection"
TIMELAPSE: Final[CaptureMethod] = "timeLapse"


@dataclass(frozen=True)
class CapturedFrame:
    event_id: str
    media_id: str
    seq: int
    captured_at: datetime
    captured_mono: float
    trigger_mono: float | None
    capture_method: CaptureMethod
    trigger_source: TriggerSource
    clock: ClockState
    ir_on: bool
    frame: Frame


@dataclass(frozen=True)
class EventClosed:
    event_id: str
    ended_at: datetime
    frame_count: int
    capture_method: CaptureMethod
