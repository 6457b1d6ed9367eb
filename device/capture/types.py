"""What the capture loop hands to the store: the narrow door between the two rooms."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from device.clock import ClockState
from device.hardware.camera import Frame

ACTIVITY = "activityDetection"
TIMELAPSE = "timeLapse"


@dataclass(frozen=True)
class CapturedFrame:
    event_id: str
    media_id: str
    seq: int
    captured_at: datetime
    captured_mono: float
    trigger_mono: float | None
    capture_method: str
    trigger_source: str
    clock: ClockState
    ir_on: bool
    frame: Frame


@dataclass(frozen=True)
class EventClosed:
    event_id: str
    ended_at: datetime
    frame_count: int
    capture_method: str
