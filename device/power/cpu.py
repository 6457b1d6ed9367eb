"""CPU seconds of this process by room, read from the kernel per thread.

The kernel keeps each thread's user and system time in ``/proc/self/task/<tid>/stat``; Python
knows each live thread's kernel id (``Thread.native_id``) and its name. The name says the room
(``THREAD_ROOMS``). Python 3.11 does not pass thread names to the kernel, so the kernel's
``comm`` is of no help and the mapping goes through ``threading.enumerate()``.

What no live Python thread accounts for goes to ``other``: threads that have ended (their time
stays in the process total but leaves /proc), native threads that libraries start themselves
(a TFLite or BLAS pool, gRPC), and threads whose names are not in the table. ``other`` is the
process total minus the live threads' sum, so the rooms always add up to the process total.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path

ROOMS = ("capture", "store", "vision", "uplink", "import", "ota", "power", "main", "other")

# Thread name (exact, or a prefix ending in "-" or "*") -> room. The agent names its own
# threads; the libraries' names are theirs:
# - paho-mqtt's loop thread: "paho-mqtt-client-<client id>";
# - gpiozero's sampling queue (MotionSensor) is unnamed, so Python calls it "Thread-N (fill)";
#   it is matched by class name below.
THREAD_ROOMS: tuple[tuple[str, str], ...] = (
    ("MainThread", "main"),
    ("capture", "capture"),
    ("camera*", "capture"),
    ("pir*", "capture"),
    ("store-writer", "store"),
    ("store*", "store"),
    ("vision", "vision"),
    ("vision*", "vision"),
    ("uplink*", "uplink"),
    ("paho-mqtt-client-*", "uplink"),
    ("telemetry*", "uplink"),
    ("connectivity*", "uplink"),
    ("import", "import"),
    ("import*", "import"),
    ("ota-*", "ota"),
    ("power*", "power"),
    ("battery*", "power"),
    ("radio*", "power"),
    ("wake*", "power"),
)
# Library threads Python names "Thread-N": their class says whose they are.
CLASS_ROOMS: dict[str, str] = {
    "GPIOQueue": "capture",  # gpiozero: a sampled input (MotionSensor) reading the PIR pin
    "HoldThread": "capture",  # gpiozero: when_held timing of an input
    "_callback_thread": "capture",  # lgpio, pigpio: the pin factory's edge callbacks on a Pi
    "DrainThread": "uplink",
}


def room_of(thread: threading.Thread) -> str | None:
    """The room a thread works for, or None when neither its name nor its class says."""
    name = thread.name
    for pattern, room in THREAD_ROOMS:
        if pattern.endswith("*"):
            if name.startswith(pattern[:-1]):
                return room
        elif name == pattern:
            return room
    return CLASS_ROOMS.get(type(thread).__name__)


def _ticks() -> float:
    try:
        return float(os.sysconf("SC_CLK_TCK"))
    except (ValueError, OSError):
        return 100.0  # the value on every Linux build camtrap targets


def thread_cpu_s(tid: int, proc: Path = Path("/proc/self/task"), ticks: float = 0.0) -> float:
    """utime + stime of one thread in seconds; 0.0 once the thread is gone."""
    try:
        text = (proc / str(tid) / "stat").read_text()
    except OSError:
        return 0.0
    # comm (field 2) is in parentheses and may hold spaces or ")": split after the last one.
    fields = text[text.rfind(")") + 2 :].split()
    try:
        # After comm: state is index 0, so utime (field 14) is 11 and stime (field 15) is 12.
        used = int(fields[11]) + int(fields[12])
    except (IndexError, ValueError):
        return 0.0
    return used / (ticks or _ticks())


def process_cpu_s() -> float:
    """User + system seconds of the whole process (children excluded)."""
    times = os.times()
    return times.user + times.system


def cpu_by_room(
    threads: Iterable[threading.Thread] | None = None, proc: Path = Path("/proc/self/task")
) -> dict[str, float]:
    """Every room in ``ROOMS`` with its CPU seconds; they sum to the process total."""
    ticks = _ticks()
    rooms = dict.fromkeys(ROOMS, 0.0)
    live = 0.0
    # Threads first, the total last: the total only grows, so it holds every thread read.
    for thread in threading.enumerate() if threads is None else threads:
        room = room_of(thread)
        tid = thread.native_id
        if room is None or tid is None or not proc.is_dir():
            continue
        used = thread_cpu_s(tid, proc, ticks)
        rooms[room] += used
        live += used
    total = process_cpu_s()
    # The kernel and times() round differently; never let "other" go below zero.
    rooms["other"] = max(0.0, total - live)
    return rooms
