"""Clock honesty: where the time came from, and whether anything vouches for it.

A trap that lost power for a week with no network may wake up in 1970 or, with an RTC, a few
minutes off. We never invent a timestamp; we record the source with every capture:

- ``ntp``: systemd-timesyncd says synchronised, or the kernel's NTP status is not TIME_ERROR;
- ``manual``: a technician set the time by hand (camtrap-provision leaves a marker);
- ``rtc``: a battery-backed real-time clock exists, but nothing has synchronised it;
- ``unsynchronised``: nothing vouches for the time.

Only ``ntp`` counts as synced.

Separately, ``MonotonicClock`` is elapsed time and waiting on it, for the loops that keep
intervals (capture's bursts, cooldown and timelapse). It is passed in, so a test can drive a
fake one instead of sleeping.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from device.config import ClockSection

TIME_ERROR = 5  # adjtimex(2): "clock not synchronized"


@dataclass(frozen=True)
class ClockState:
    source: str
    synced: bool


def kernel_says_synced() -> bool | None:
    """adjtimex(2) read-only query; None when the call is not available here."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        buffer = ctypes.create_string_buffer(512)  # larger than struct timex on any ABI
        state = libc.adjtimex(buffer)  # modes = 0: only reads
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return state != TIME_ERROR


class ClockProbe:
    def __init__(self, section: ClockSection) -> None:
        self.section = section
        self._lock = threading.Lock()
        self._cached: ClockState | None = None
        self._checked = 0.0

    def probe(self) -> ClockState:
        s = self.section
        if s.timesync_flag.exists():
            return ClockState("ntp", True)
        if s.kernel_status and kernel_says_synced():
            return ClockState("ntp", True)
        if s.manual_marker.exists():
            return ClockState("manual", False)
        if s.rtc_device.exists():
            return ClockState("rtc", False)
        return ClockState("unsynchronised", False)

    def state(self) -> ClockState:
        """Cached for ``refresh_s``: capture must not pay for file and syscall checks."""
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._checked >= self.section.refresh_s:
                self._cached = self.probe()
                self._checked = now
            return self._cached


class MonotonicClock(Protocol):
    """Elapsed time, and a wait measured on it."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary start; never goes back."""
        ...

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        """Block until ``event`` is set (True) or ``timeout`` seconds of this clock passed
        (False); ``None`` waits for the event alone."""
        ...


class SystemClock:
    """The real monotonic clock: ``time.monotonic`` and ``Event.wait``."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        return event.wait(timeout)


SYSTEM_CLOCK = SystemClock()


def local_now(zone: str) -> datetime:
    return datetime.now(ZoneInfo(zone))
