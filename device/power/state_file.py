"""The power state the agent leaves in its data dir (``power-state.json``), for the commands
that run beside it: ``camtrap status`` and ``camtrap energy`` read it, the agent rewrites it
at every heartbeat and when it stops.

The counters in it are cumulative over every run of this data dir: the agent starts from the
file's figures (``base_counters``) and adds its own run on top.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from device.contracts.durable import PART_SUFFIX, atomic_write
from device.power.counters import EnergySnapshot
from device.power.report import BatteryReading, PowerReport

FILE_NAME = "power-state.json"
FORMAT = 1


class PowerStateError(Exception):
    """The file exists but cannot be read; the message names it."""


def path_in(data_dir: Path) -> Path:
    return data_dir / FILE_NAME


def discard_partial(data_dir: Path) -> None:
    """A save cut short by a crash or a power loss leaves ``power-state.json.part``: the file
    itself is whole (the last save), the part is nothing; the next start removes it."""
    part = path_in(data_dir).with_name(FILE_NAME + PART_SUFFIX)
    with contextlib.suppress(OSError):  # a read-only card: the next save says so
        part.unlink(missing_ok=True)


def save_report(data_dir: Path, report: PowerReport) -> None:
    body = {"format": FORMAT, **asdict(report)}
    atomic_write(path_in(data_dir), json.dumps(body, indent=1, sort_keys=True).encode())


def load_report(data_dir: Path) -> PowerReport | None:
    """None when the agent never wrote one; PowerStateError when it is unreadable."""
    path = path_in(data_dir)
    try:
        body: dict[str, Any] = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PowerStateError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except ValueError as exc:
        raise PowerStateError(f"{path}: not valid JSON ({exc})") from exc
    try:
        if body.get("format") != FORMAT:
            raise ValueError(f"format {body.get('format')!r}, expected {FORMAT}")
        battery = body.get("battery")
        return PowerReport(
            profile=str(body["profile"]),
            board=str(body["board"]),
            counters=EnergySnapshot(**body["counters"]),
            battery=BatteryReading(**battery) if battery is not None else None,
            shed_level=int(body["shed_level"]),
            radio_on=bool(body["radio_on"]),
            days_left=body.get("days_left"),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise PowerStateError(f"{path}: not a power state file ({exc})") from exc
