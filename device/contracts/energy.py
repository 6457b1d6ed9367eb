"""The energy model: the agent's own counters times a per-board power table.

Shared by the trap (``camtrap energy``, the heartbeat's ``daysLeft``) and the cloud (the fleet
page's "days left (est.)"), so both give the same answer from the same counters. It imports
nothing from the agent: a snapshot is anything with the ``EnergyFigures`` attributes.

The model (docs/energy.md has the sources and what it leaves out):

- the board idles all day (``idle_w``); everything else is on top of idle;
- CPU: each CPU-second of the agent costs ``cpu_w_per_core`` joules (one busy core over idle);
- the camera: ``camera_w`` for every second the sensor streams;
- the radio: ``radio_w`` for every second it is on;
- captures: ``capture_j`` per frame for what the CPU counters do not see (the SD card write).

Rates per day are counter / uptime_s * 86400: the counters' own average over the time the
agent ran, so an hour of counters is a rough estimate and a week is a good one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

__all__ = [
    "BOARDS",
    "DEVICE_TREE_MODEL",
    "FALLBACK_BOARD",
    "ROUGH_BELOW_S",
    "BoardPower",
    "Counters",
    "EnergyBudget",
    "EnergyFigures",
    "board_from_model",
    "budget",
    "detect_board",
]

BoardName = Literal["zero2w", "pi3", "pi4", "pi5"]
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")
FALLBACK_BOARD: BoardName = "pi4"
# Under an hour of counters, a day's rate is an extrapolation of a few events: say so.
ROUGH_BELOW_S = 3600.0
DAY_S = 86400.0


@dataclass(frozen=True)
class BoardPower:
    """Watts (joules for a capture) at the 5 V input; ``sources`` names each figure's origin,
    keyed like the fields (docs/energy.md cites them in full)."""

    idle_w: float
    cpu_w_per_core: float
    camera_w: float
    radio_w: float
    capture_j: float
    sources: Mapping[str, str]


# Shared estimates (no published figure): see docs/energy.md, "The table".
_RADIO = "estimate: Wi-Fi associated and moving data, a few hundred mW over idle (docs/energy.md)"
_CAPTURE = "estimate: SD write of a ~3 MB JPEG at ~20 MB/s and ~0.5 W, plus fsyncs"

BOARDS: dict[str, BoardPower] = {
    "zero2w": BoardPower(
        idle_w=0.60,
        cpu_w_per_core=0.48,
        camera_w=0.90,
        radio_w=0.40,
        capture_j=0.2,
        sources={
            "idle_w": "CNX Software 2021-12-09: 120 mA at 5 V idle, Raspberry Pi OS Bullseye",
            "cpu_w_per_core": "estimate: the Pi 3 B's figure scaled by clock (1.0 / 1.2 GHz)",
            "camera_w": "estimate: the Pi 3 B's figure (same VideoCore IV camera pipeline)",
            "radio_w": _RADIO,
            "capture_j": _CAPTURE,
        },
    ),
    "pi3": BoardPower(
        idle_w=1.4,
        cpu_w_per_core=0.575,
        camera_w=0.90,
        radio_w=0.40,
        capture_j=0.2,
        sources={
            "idle_w": "pidramble power benchmarks (Jeff Geerling): Pi 3 B idle 260 mA, 1.4 W",
            "cpu_w_per_core": "pidramble: Pi 3 B stress --cpu 4 3.7 W; (3.7 - 1.4) / 4 cores",
            "camera_w": "Xtronix Pi power table: Pi 3 B HDMI 320 mA, HDMI + camera 500 mA",
            "radio_w": _RADIO,
            "capture_j": _CAPTURE,
        },
    ),
    "pi4": BoardPower(
        idle_w=2.7,
        cpu_w_per_core=0.925,
        camera_w=1.0,
        radio_w=0.40,
        capture_j=0.2,
        sources={
            "idle_w": "pidramble power benchmarks (Jeff Geerling): Pi 4 B idle 540 mA, 2.7 W",
            "cpu_w_per_core": "pidramble: Pi 4 B stress --cpu 4 6.4 W; (6.4 - 2.7) / 4 cores",
            "camera_w": "estimate: the Pi 3 B's 0.9 W rounded up for the Pi 4's faster ISP clock",
            "radio_w": _RADIO,
            "capture_j": _CAPTURE,
        },
    ),
    "pi5": BoardPower(
        idle_w=3.0,
        cpu_w_per_core=1.25,
        camera_w=1.0,
        radio_w=0.40,
        capture_j=0.2,
        sources={
            "idle_w": "u-labs.de Pi 5 power-off article: about 3 W idle, Raspberry Pi OS 12",
            "cpu_w_per_core": "estimate: (8 W under Geekbench, geerlingguy/sbc-reviews#21 - 3 W"
            " idle) / 4 cores",
            "camera_w": "estimate: as the Pi 4 (no published camera-streaming figure for the Pi 5)",
            "radio_w": _RADIO,
            "capture_j": _CAPTURE,
        },
    ),
}


class EnergyFigures(Protocol):
    """What the model reads: ``device.power.counters.EnergySnapshot`` has these, and so does
    ``Counters`` (the cloud builds one from a heartbeat)."""

    @property
    def uptime_s(self) -> float: ...
    @property
    def camera_on_s(self) -> float: ...
    @property
    def radio_on_s(self) -> float: ...
    @property
    def captures(self) -> int: ...
    @property
    def cpu_s(self) -> dict[str, float]: ...


@dataclass(frozen=True)
class Counters:
    uptime_s: float
    camera_on_s: float = 0.0
    radio_on_s: float = 0.0
    captures: int = 0
    cpu_s: dict[str, float] = field(default_factory=dict)


def board_from_model(model: str) -> BoardName | None:
    """The table's board for a device-tree model string, or None when it is not one of them."""
    if "Raspberry Pi" not in model:
        return None
    if "Zero 2" in model:
        return "zero2w"
    if "Pi 5" in model or "Compute Module 5" in model or "Pi 500" in model:
        return "pi5"
    if "Pi 4" in model or "Compute Module 4" in model or "Pi 400" in model:
        return "pi4"
    if "Pi 3" in model or "Compute Module 3" in model:
        return "pi3"
    return None


def detect_board(model_path: Path = DEVICE_TREE_MODEL) -> tuple[BoardName, str]:
    """The board this runs on and a note: empty when the device tree named it, else why
    ``FALLBACK_BOARD`` was assumed."""
    try:
        # The kernel ends the string with a NUL.
        model = model_path.read_bytes().rstrip(b"\x00\n").decode("utf-8", "replace")
    except OSError:
        return FALLBACK_BOARD, f"no {model_path}: not a Raspberry Pi, {FALLBACK_BOARD} assumed"
    board = board_from_model(model)
    if board is None:
        return FALLBACK_BOARD, f"{model!r} is not in the power table, {FALLBACK_BOARD} assumed"
    return board, ""


@dataclass(frozen=True)
class EnergyBudget:
    board: str
    battery_wh: float
    hours_counted: float  # how many hours of counters the rates average over
    idle_wh: float  # each figure: Wh per day
    camera_wh: float
    cpu_wh: dict[str, float]  # by room
    radio_wh: float
    captures_wh: float
    battery_pct: float | None = None
    board_note: str = ""

    @property
    def rough(self) -> bool:
        return self.hours_counted * 3600.0 < ROUGH_BELOW_S

    @property
    def total_wh(self) -> float:
        return (
            self.idle_wh
            + self.camera_wh
            + sum(self.cpu_wh.values())
            + self.radio_wh
            + self.captures_wh
        )

    @property
    def days_full(self) -> float:
        """Days a full battery lasts at this rate."""
        return self.battery_wh / self.total_wh if self.total_wh > 0 else float("inf")

    @property
    def days_left(self) -> float | None:
        """Days the charge left lasts; None without a battery percent."""
        if self.battery_pct is None:
            return None
        return self.days_full * max(0.0, min(100.0, self.battery_pct)) / 100.0

    def activities(self) -> list[tuple[str, float]]:
        """(activity, Wh per day), in the order ``camtrap energy`` prints them."""
        rows = [("idle", self.idle_wh), ("camera on", self.camera_wh)]
        rows += [(f"cpu {room}", wh) for room, wh in sorted(self.cpu_wh.items())]
        rows += [("radio on", self.radio_wh), ("captures", self.captures_wh)]
        return rows

    def as_dict(self) -> dict[str, object]:
        return {
            "board": self.board,
            "board_note": self.board_note,
            "battery_wh": self.battery_wh,
            "battery_pct": self.battery_pct,
            "hours_counted": round(self.hours_counted, 3),
            "rough": self.rough,
            "wh_per_day": {
                "idle": self.idle_wh,
                "camera_on": self.camera_wh,
                "cpu": dict(self.cpu_wh),
                "radio_on": self.radio_wh,
                "captures": self.captures_wh,
                "total": self.total_wh,
            },
            "days_full": self.days_full,
            "days_left": self.days_left,
        }


def budget(
    snapshot: EnergyFigures,
    board: str,
    battery_wh: float,
    battery_pct: float | None = None,
    *,
    model_path: Path = DEVICE_TREE_MODEL,
) -> EnergyBudget:
    """Wh per day by activity for ``board`` ("auto": read the device tree). Raises ValueError
    for a board that is not in the table or a battery that is not positive."""
    note = ""
    if board == "auto":
        board, note = detect_board(model_path)
    if board not in BOARDS:
        raise ValueError(f"board {board!r}: expected auto or one of {', '.join(BOARDS)}")
    if not battery_wh > 0:
        raise ValueError(f"battery {battery_wh!r} Wh: must be above 0")
    power = BOARDS[board]
    uptime = max(0.0, float(snapshot.uptime_s))

    def per_day(count: float) -> float:
        # No counted time yet: nothing to average, so no rate on top of idle.
        return count / uptime * DAY_S if uptime > 0 else 0.0

    def wh(joules_per_day: float) -> float:
        return joules_per_day / 3600.0

    return EnergyBudget(
        board=board,
        board_note=note,
        battery_wh=float(battery_wh),
        battery_pct=battery_pct,
        hours_counted=uptime / 3600.0,
        idle_wh=power.idle_w * 24.0,
        camera_wh=wh(power.camera_w * per_day(snapshot.camera_on_s)),
        cpu_wh={
            room: wh(power.cpu_w_per_core * per_day(seconds))
            for room, seconds in snapshot.cpu_s.items()
        },
        radio_wh=wh(power.radio_w * per_day(snapshot.radio_on_s)),
        captures_wh=wh(power.capture_j * per_day(snapshot.captures)),
    )
