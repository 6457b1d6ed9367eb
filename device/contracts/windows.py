"""Daily time windows, in the trap's local time: ``"18:00-06:00"`` (across midnight) or
``"12:00-12:30"``.

One spelling serves every schedule of the trap: the capture windows of the ``scheduled`` power
profile (``power.capture_windows``), the sync windows of the radio (``uplink.sync_windows``),
and the wake alarms that sleep the trap between them; the cloud reads them too. An empty list
means "any time".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

DAY = timedelta(days=1)


class WindowError(ValueError):
    """A window that is not ``HH:MM-HH:MM``; the message says which and why."""


@dataclass(frozen=True)
class Window:
    """[start, end) each day; an end before the start spans midnight."""

    start: time
    end: time

    def contains(self, at: time) -> bool:
        if self.start < self.end:
            return self.start <= at < self.end
        return at >= self.start or at < self.end

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


def _hhmm(text: str, spec: str) -> time:
    try:
        hours, minutes = (int(part) for part in text.strip().split(":"))
        return time(hours, minutes)
    except ValueError as exc:
        raise WindowError(f"{spec!r} is not a window HH:MM-HH:MM ({text.strip()!r})") from exc


def parse_window(spec: str) -> Window:
    start, sep, end = spec.partition("-")
    if not sep:
        raise WindowError(f"{spec!r} is not a window HH:MM-HH:MM (no '-')")
    window = Window(_hhmm(start, spec), _hhmm(end, spec))
    if window.start == window.end:
        raise WindowError(f"{spec!r} is empty (start equals end); an empty list means always")
    return window


def parse_windows(specs: Sequence[str]) -> tuple[Window, ...]:
    return tuple(parse_window(spec) for spec in specs)


@dataclass(frozen=True)
class Schedule:
    """A set of daily windows in one time zone. No windows: always open."""

    windows: tuple[Window, ...]
    zone: str = "UTC"

    @classmethod
    def parse(cls, specs: Sequence[str], zone: str = "UTC") -> Schedule:
        return cls(parse_windows(specs), zone)

    @property
    def always(self) -> bool:
        return not self.windows

    def _local(self, now: datetime) -> datetime:
        if now.tzinfo is None:
            raise ValueError("Schedule needs an aware datetime")
        return now.astimezone(ZoneInfo(self.zone))

    def is_open(self, now: datetime) -> bool:
        if self.always:
            return True
        at = self._local(now).time()
        return any(w.contains(at) for w in self.windows)

    def _edges(self, now: datetime) -> list[tuple[datetime, bool]]:
        """Every window start (True) and end (False) from yesterday to the day after tomorrow,
        as aware local datetimes, in order."""
        local = self._local(now)
        zone = ZoneInfo(self.zone)
        edges: list[tuple[datetime, bool]] = []
        for offset in (-1, 0, 1, 2):
            day = (local + offset * DAY).date()
            for w in self.windows:
                edges.append((datetime.combine(day, w.start, zone), True))
                edges.append((datetime.combine(day, w.end, zone), False))
        edges.sort(key=lambda edge: edge[0])
        return edges

    def next_change(self, now: datetime) -> datetime | None:
        """The first moment after ``now`` at which ``is_open`` changes; None if it never does."""
        if self.always:
            return None
        state = self.is_open(now)
        probe = self._local(now)
        for at, _ in self._edges(now):
            if at > probe and self.is_open(at) != state:
                return at
        return None  # the windows cover the whole day

    def next_open(self, now: datetime) -> datetime | None:
        """``now`` if open, else when the next window opens; None if never."""
        if self.is_open(now):
            return now
        return self.next_change(now)

    def seconds_until_change(self, now: datetime) -> float | None:
        change = self.next_change(now)
        return None if change is None else max(0.0, (change - now).total_seconds())

    def __str__(self) -> str:
        return ", ".join(str(w) for w in self.windows) or "always"
