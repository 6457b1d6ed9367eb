"""A capture sink for tests: keeps what the capture loop hands over, in order."""

from __future__ import annotations

import threading

from device.capture.types import CapturedFrame, EventClosed


class Recorder:
    """A sink that keeps what capture hands over."""

    def __init__(self) -> None:
        self.items: list[CapturedFrame | EventClosed] = []
        self.lock = threading.Lock()

    def __call__(self, item: CapturedFrame | EventClosed) -> None:
        with self.lock:
            self.items.append(item)

    def frames(self) -> list[CapturedFrame]:
        with self.lock:
            return [i for i in self.items if isinstance(i, CapturedFrame)]

    def events(self) -> list[EventClosed]:
        with self.lock:
            return [i for i in self.items if isinstance(i, EventClosed)]
