"""The agent's own energy counters: what ``camtrap energy`` multiplies by the board's power
table (``device.contracts.energy``), and what the heartbeat carries.

Each room reports the state it controls: the camera backend wrapper says when the sensor
streams (``camera(True)``/``camera(False)``), the radio switch when the radio is on, the store
how many frames it committed. CPU seconds by room are read from the kernel per thread
(``cpu_by_room``), so no room has to time itself.

Thread-safe: rooms call in from their own threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class EnergySnapshot:
    """Cumulative figures since ``since`` (unix seconds; the first start of this data dir once
    persisted)."""

    since: float
    uptime_s: float
    camera_on_s: float
    radio_on_s: float
    captures: int
    cpu_s: dict[str, float] = field(default_factory=dict)  # room -> CPU seconds


class EnergyCounters:
    """``clock`` is monotonic seconds (tests pass a fake one); ``wall`` stamps ``since``."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        radio_always_on: bool = True,
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._started = clock()
        self._since = wall()
        self._camera_on_at: float | None = None
        self._camera_s = 0.0
        # Without a radio switch the radio is on whenever the agent runs.
        self._radio_on_at: float | None = self._started if radio_always_on else None
        self._radio_s = 0.0
        self._captures = 0

    def camera(self, on: bool) -> None:
        with self._lock:
            self._camera_on_at, self._camera_s = _toggle(
                on, self._camera_on_at, self._camera_s, self._clock()
            )

    def radio(self, on: bool) -> None:
        with self._lock:
            self._radio_on_at, self._radio_s = _toggle(
                on, self._radio_on_at, self._radio_s, self._clock()
            )

    def add_captures(self, frames: int = 1) -> None:
        with self._lock:
            self._captures += frames

    @property
    def camera_is_on(self) -> bool:
        return self._camera_on_at is not None

    @property
    def radio_is_on(self) -> bool:
        return self._radio_on_at is not None

    def snapshot(self, cpu_s: dict[str, float] | None = None) -> EnergySnapshot:
        """The figures now; ``cpu_s`` from ``cpu_by_room`` (left out: empty)."""
        with self._lock:
            now = self._clock()
            camera = self._camera_s + (
                now - self._camera_on_at if self._camera_on_at is not None else 0.0
            )
            radio = self._radio_s + (
                now - self._radio_on_at if self._radio_on_at is not None else 0.0
            )
            return EnergySnapshot(
                since=self._since,
                uptime_s=now - self._started,
                camera_on_s=camera,
                radio_on_s=radio,
                captures=self._captures,
                cpu_s=dict(cpu_s or {}),
            )


def _toggle(on: bool, on_at: float | None, total: float, now: float) -> tuple[float | None, float]:
    if on and on_at is None:
        return now, total
    if not on and on_at is not None:
        return None, total + (now - on_at)
    return on_at, total
