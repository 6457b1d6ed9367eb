"""The heartbeat: how the trap is doing, sent every ``telemetry.interval_s`` while online.

Every figure is best effort (a missing thermal zone or an unreadable file leaves it out).
Among them, the frames held as deferred blanks (``vision.blank_media_policy = "defer"``) and
their bytes: what the trap keeps in case its blank filter was wrong. With a power provider
(the agent's power room) it is a v3 heartbeat: profile, battery, shedding and the cumulative
energy counters the cloud turns into "days left" (docs/energy.md).
Device events (disk full, storage trouble) queue here too and go out at the next tick that
finds the link up; they are operator hints, not captures, so they live in RAM only.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from device import __version__
from device.clock import ClockProbe
from device.contracts.energy import BOARDS, detect_board
from device.contracts.protocol import (
    PROTOCOL_VERSION,
    TELEMETRY_POWER_VERSION,
    TELEMETRY_VERSION,
    DeviceEvent,
    Telemetry,
)
from device.power.report import PowerReport
from device.store.db import Database
from device.store.media import Media
from device.store.outbox import Outbox
from device.uplink.drain import last_sync_at
from device.uplink.transport import Transport, TransportError

log = logging.getLogger("camtrap.telemetry")


def cpu_temp_c(thermal_dir: Path) -> float | None:
    """The hottest thermal zone, in degrees Celsius (the kernel reports millidegrees)."""
    temps = []
    for zone in sorted(thermal_dir.glob("thermal_zone*/temp")):
        try:
            temps.append(int(zone.read_text().strip()) / 1000.0)
        except (OSError, ValueError):
            continue
    return max(temps) if temps else None


def uptime_s(uptime_file: Path) -> float | None:
    try:
        return float(uptime_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def disk_usage(path: Path) -> tuple[int | None, int | None]:
    try:
        st = os.statvfs(path)
    except OSError:
        return None, None
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


def recovery_message(record: dict[str, Any]) -> str:
    return (
        f"database was damaged ({record.get('reason')}); kept as {record.get('aside')} and"
        f" rebuilt from the media files: {record.get('rebuilt_media')} captures re-registered,"
        f" {record.get('outbox_pending')} items queued for upload again"
    )


def power_fields(report: PowerReport, battery_wh: float | None = None) -> dict[str, Any]:
    """The v3 heartbeat fields of one power report (figures a gauge cannot give stay out).
    ``battery_wh`` (power.battery_wh) lets the cloud turn the counters into days left."""
    battery = report.battery
    counters = report.counters
    # The cloud cannot read this trap's device tree: name the board here.
    board = report.board if report.board in BOARDS else detect_board()[0]

    def bounded(value: float | None, high: float) -> float | None:
        # A gauge that reads 101% or a glitch below zero is clamped, not a refused heartbeat.
        return None if value is None else min(high, max(0.0, float(value)))

    return {
        "power_profile": report.profile,
        "board": board,
        "battery_wh": battery_wh,
        "battery_pct": bounded(battery.percent, 100.0) if battery else None,
        "battery_v": bounded(battery.voltage_v, 1000.0) if battery else None,
        "shed_level": report.shed_level,
        "radio_on": report.radio_on,
        "counters_since": datetime.fromtimestamp(counters.since, UTC),
        "counted_s": max(0.0, counters.uptime_s),
        "camera_on_s": max(0.0, counters.camera_on_s),
        "radio_on_s": max(0.0, counters.radio_on_s),
        "captures": max(0, counters.captures),
        "cpu_s": {room: max(0.0, s) for room, s in counters.cpu_s.items()},
        "days_left": (
            max(0.0, report.days_left)
            if report.days_left is not None and math.isfinite(report.days_left)
            else None
        ),
    }


class Heartbeat:
    def __init__(
        self,
        device_id: str,
        db: Callable[[], Database | None],
        data_dir: Path,
        clock: ClockProbe,
        *,
        interval_s: float,
        thermal_dir: Path,
        uptime_file: Path,
        model_version: Callable[[], str | None] = lambda: None,
        media_bytes: Callable[[], int | None] = lambda: None,
        disk_full: Callable[[], bool | None] = lambda: None,
        power: Callable[[], PowerReport | None] = lambda: None,
        battery_wh: float | None = None,
    ) -> None:
        self.device_id = device_id
        self.db = db
        self.data_dir = data_dir
        self.clock = clock
        self.interval_s = interval_s
        self.thermal_dir = thermal_dir
        self.uptime_file = uptime_file
        self.model_version = model_version
        self.media_bytes = media_bytes
        self.disk_full = disk_full
        self.power = power
        self.battery_wh = battery_wh
        self.next_at = 0.0  # the first tick online sends one at once
        self.events: deque[DeviceEvent] = deque(maxlen=100)
        self.sent = 0

    def collect(self) -> Telemetry:
        free, total = disk_usage(self.data_dir)
        depth: dict[str, int] = {}
        queue_bytes = oldest = last_sync = deferred_frames = deferred_bytes = None
        db = self.db()
        if db is not None:
            box = Outbox(db)
            depth = box.depth()
            queue_bytes = box.pending_bytes()
            oldest = box.oldest_pending_age_s()
            last_sync = last_sync_at(db)
            held = Media(db).deferred_blanks()
            deferred_frames, deferred_bytes = held.frames, held.bytes
        clock = self.clock.state()
        power = self.power()
        if power is not None:
            version = TELEMETRY_POWER_VERSION
        elif deferred_bytes is not None:
            version = TELEMETRY_VERSION  # v2: the deferred-blank figures
        else:
            version = PROTOCOL_VERSION
        return Telemetry(
            # The lowest version that holds what is sent, so an older ingest still takes it.
            v=version,
            device_id=self.device_id,
            item_id=f"tel:{time.time_ns()}",
            sent_at=datetime.now(UTC),
            free_disk_bytes=free,
            total_disk_bytes=total,
            media_bytes=self.media_bytes(),
            queue_depth=depth,
            queue_bytes=queue_bytes,
            oldest_unsent_age_s=oldest,
            cpu_temp_c=cpu_temp_c(self.thermal_dir),
            uptime_s=uptime_s(self.uptime_file),
            clock_source=clock.source,
            clock_synced=clock.synced,
            model_version=self.model_version(),
            agent_version=__version__,
            last_sync_at=datetime.fromisoformat(last_sync) if last_sync else None,
            disk_full=self.disk_full(),
            deferred_blank_frames=deferred_frames,
            deferred_blank_bytes=deferred_bytes,
            **(power_fields(power, self.battery_wh) if power is not None else {}),
        )

    def report(self, code: str, severity: str, message: str) -> None:
        self.events.append(
            DeviceEvent(
                device_id=self.device_id,
                item_id=f"evt:{time.time_ns()}",
                at=datetime.now(UTC),
                severity=severity,
                code=code,
                message=message[:2000],
            )
        )

    def report_recovery(self, record: dict[str, Any]) -> None:
        """The store rebuilt a damaged database (``device.store.recovery``): tell the cloud."""
        self.report("db_recovered", "error", recovery_message(record))

    def tick(self, transport: Transport) -> None:
        """Called by the drain loop on every round while the link is up."""
        try:
            while self.events:
                transport.send(self.events[0])
                self.events.popleft()
            if time.monotonic() >= self.next_at:
                transport.send(self.collect())
                self.sent += 1
                self.next_at = time.monotonic() + self.interval_s
        except TransportError as exc:
            log.info("heartbeat not sent: %s", exc)
