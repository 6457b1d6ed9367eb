"""``camtrap energy``: the trap's energy budget from the agent's own counters.

It reads the power state the agent leaves in the data dir (``power-state.json``, cumulative
over every run), multiplies the counters by the board's power table
(``device.contracts.energy``) and prints Wh per day by activity and the days the battery
lasts. Safe while the agent runs: it only reads one small file. docs/energy.md explains the
model and its sources.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from device.config import Settings
from device.contracts.energy import BOARDS, DEVICE_TREE_MODEL, EnergyBudget, budget
from device.errors import UserError
from device.exitcodes import Exit
from device.power.report import PowerReport
from device.power.state_file import PowerStateError, load_report, path_in

MAX_BATTERY_WH = 100_000.0  # the same bound as power.battery_wh


def battery_wh(text: str) -> float:
    """argparse type of ``--battery-wh``: a number of watt-hours above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of watt-hours") from None
    if not 0 < value <= MAX_BATTERY_WH:
        raise argparse.ArgumentTypeError(f"{text}: must be above 0 and at most {MAX_BATTERY_WH:g}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--board",
        choices=sorted(BOARDS),
        default=None,
        help="the board's power table (default: power.board; auto reads the device tree)",
    )
    parser.add_argument(
        "--battery-wh",
        type=battery_wh,
        default=None,
        help="usable battery capacity in Wh (default: power.battery_wh)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")


def read_state(data_dir: Path) -> PowerReport:
    """The agent's last power report, or a UserError naming the file."""
    if not data_dir.is_dir():
        raise UserError(
            f"data dir {data_dir} does not exist (is the card mounted?)", Exit.NO_DATA_DIR
        )
    try:
        report = load_report(data_dir)
    except PowerStateError as exc:
        raise UserError(str(exc), Exit.DATA_ERROR) from exc
    if report is None:
        raise UserError(
            f"no energy counters in {path_in(data_dir)}: the agent has not run here",
            Exit.NO_INPUT,
        )
    return report


def estimate(
    settings: Settings,
    board: str | None = None,
    battery: float | None = None,
    *,
    model_path: Path = DEVICE_TREE_MODEL,
) -> tuple[PowerReport, EnergyBudget]:
    report = read_state(settings.storage.data_dir)
    percent = report.battery.percent if report.battery is not None else None
    result = budget(
        report.counters,
        board or settings.power.board,
        battery if battery is not None else settings.power.battery_wh,
        percent,
        model_path=model_path,
    )
    return report, result


def as_json(report: PowerReport, result: EnergyBudget, state: Path) -> str:
    body: dict[str, Any] = {
        "state_file": str(state),
        "profile": report.profile,
        **result.as_dict(),
        "counters": asdict(report.counters),
    }
    return json.dumps(body, indent=2)


def _when(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M UTC")


def render(report: PowerReport, result: EnergyBudget) -> str:
    board = result.board + (f" ({result.board_note})" if result.board_note else "")
    hours = result.hours_counted
    lines = [
        f"board {board}, battery {result.battery_wh:g} Wh, profile {report.profile}",
        f"counters since {_when(report.counters.since)}: {hours:.1f} h of agent time"
        + (" (rough: under an hour)" if result.rough else ""),
        "",
        f"{'activity':<16}{'Wh/day':>9}",
    ]
    lines += [f"{name:<16}{wh:>9.2f}" for name, wh in result.activities()]
    lines += [f"{'total':<16}{result.total_wh:>9.2f}", ""]
    lines.append(f"a full battery lasts {result.days_full:.1f} days")
    if result.days_left is not None and result.battery_pct is not None:
        pct, left = result.battery_pct, result.days_left
        lines.append(f"at {pct:.0f}% (last reading): {left:.1f} days left")
    lines.append("rates: each counter / agent time x 24 h; docs/energy.md says what is left out")
    return "\n".join(lines)


def cmd_energy(args: argparse.Namespace, settings: Settings) -> int:
    report, result = estimate(settings, args.board, args.battery_wh)
    state = path_in(settings.storage.data_dir)
    print(as_json(report, result, state) if args.json else render(report, result))
    return int(Exit.OK)
