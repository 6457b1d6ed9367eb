"""Energy counters that add up over every run of one data dir.

``EnergyCounters`` count one run of the agent. At start the ledger takes the counters of the
power state the last run left (``power-state.json``) as its base; ``total`` is that base plus
this run, and ``save`` writes the report that holds it, so the next run starts from there.

A state file that cannot be read costs the history, never the run: it is logged once, moved
aside (``power-state.json.unreadable-<unix time>``, kept for a look) and the counters start
again from zero.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from device.power.counters import EnergyCounters, EnergySnapshot
from device.power.report import PowerReport
from device.power.state_file import (
    PowerStateError,
    discard_partial,
    load_report,
    path_in,
    save_report,
)

log = logging.getLogger("camtrap.power")


class EnergyLedger:
    def __init__(
        self,
        data_dir: Path,
        counters: EnergyCounters,
        *,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.data_dir = data_dir
        self.counters = counters
        self.previous: PowerReport | None = None
        discard_partial(data_dir)
        try:
            self.previous = load_report(data_dir)
        except PowerStateError as exc:
            state = path_in(data_dir)
            aside = state.with_name(f"{state.name}.unreadable-{int(wall())}")
            try:
                os.replace(state, aside)
                log.warning("%s; moved aside to %s, energy counters start again", exc, aside.name)
            except OSError as move:
                log.warning("%s; cannot move it aside (%s), it will be rewritten", exc, move)
        self.base: EnergySnapshot | None = self.previous.counters if self.previous else None

    def total(self, cpu_s: dict[str, float] | None = None) -> EnergySnapshot:
        """Every run so far plus this one; ``cpu_s`` is this run's, from ``cpu_by_room``."""
        run = self.counters.snapshot(cpu_s)
        base = self.base
        if base is None:
            return run
        rooms = dict(base.cpu_s)
        for room, seconds in run.cpu_s.items():
            rooms[room] = rooms.get(room, 0.0) + seconds
        return EnergySnapshot(
            since=base.since,
            uptime_s=base.uptime_s + run.uptime_s,
            camera_on_s=base.camera_on_s + run.camera_on_s,
            radio_on_s=base.radio_on_s + run.radio_on_s,
            captures=base.captures + run.captures,
            cpu_s=rooms,
        )

    def save(self, report: PowerReport) -> None:
        """Write ``report`` (its counters from ``total``) as the data dir's power state."""
        save_report(self.data_dir, report)
