"""The fleet view: one row per device from its latest telemetry, plus recent history.

The heartbeat's ``model_version`` is what the trap classifies with (``name@version``, or
``backbone@version+head@version`` when a head serves): the page shows the model and the head
apart, so a head rolled out over the fleet can be followed trap by trap.

A v3 heartbeat carries the trap's power figures: profile, battery, shedding steps and the
cumulative energy counters. "Days left (est.)" is the trap's own energy model
(``device.contracts.energy``) run here on those counters, so the page and ``camtrap energy``
on the trap agree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloud_stub.export.cameras import CAMERA_PARTS, Camera
from cloud_stub.ingest.database import Database
from cloud_stub.ingest.store import table_columns
from cloud_stub.models.serving import parse_serving
from device.contracts.energy import BOARDS, FALLBACK_BOARD, Counters, budget
from device.contracts.protocol import SHED_STEPS

HISTORY = 48  # telemetry points per sparkline


@dataclass
class DeviceRow:
    device_id: str
    last_seen: str | None
    status: str | None
    last_sync: str | None
    queue_depth: int | None
    disk_free_pct: float | None
    temperature_c: float | None
    model_version: str | None  # as reported: the trap's classified_by
    agent_version: str | None
    rollout: str | None
    history: dict[str, list[float]] = field(default_factory=dict)
    power: PowerCells | None = None  # None: the trap sends no power figures (before v3)

    @property
    def model(self) -> str | None:
        """The model the trap runs: a full pack, or the backbone under its head."""
        serving = parse_serving(self.model_version)
        return serving.backbone if serving else None

    @property
    def head(self) -> str | None:
        """The head serving on that model (name@version), or None."""
        serving = parse_serving(self.model_version)
        return serving.head if serving else None


@dataclass(frozen=True)
class PowerCells:
    profile: str | None
    battery_pct: float | None
    shed_steps: tuple[str, ...]
    days_left: float | None  # at the last battery percent; without one, on a full charge
    on_full_charge: bool  # no battery percent: days_left is what a full battery lasts
    rough: bool  # under an hour of counters


def power_cells(payload: dict[str, Any]) -> PowerCells | None:
    """The power columns of one heartbeat, or None when it carries no power figures."""
    profile = _get(payload, "power_profile", "powerProfile")
    counted = _get(payload, "counted_s", "countedS")
    if profile is None and counted is None:
        return None
    pct = _get(payload, "battery_pct", "batteryPct")
    level = int(_get(payload, "shed_level", "shedLevel") or 0)
    days: float | None = _get(payload, "days_left", "daysLeft")
    on_full, rough = False, False
    battery_wh = _get(payload, "battery_wh", "batteryWh")
    if counted is not None and battery_wh:
        board = _get(payload, "board", "board")
        counters = Counters(
            uptime_s=float(counted),
            camera_on_s=float(_get(payload, "camera_on_s", "cameraOnS") or 0.0),
            radio_on_s=float(_get(payload, "radio_on_s", "radioOnS") or 0.0),
            captures=int(_get(payload, "captures", "captures") or 0),
            cpu_s=dict(_get(payload, "cpu_s", "cpuS") or {}),
        )
        # Never "auto" here: that would read this server's device tree, not the trap's.
        estimate = budget(counters, board if board in BOARDS else FALLBACK_BOARD, battery_wh, pct)
        on_full = estimate.days_left is None
        days = estimate.days_full if on_full else estimate.days_left
        rough = estimate.rough
    return PowerCells(
        profile=profile,
        battery_pct=pct,
        shed_steps=SHED_STEPS[:level],
        days_left=days,
        on_full_charge=on_full,
        rough=rough,
    )


def _get(payload: dict[str, Any], snake: str, camel: str) -> Any:
    return payload.get(snake, payload.get(camel))


def _figures(payload: dict[str, Any]) -> dict[str, float | None]:
    free = _get(payload, "free_disk_bytes", "freeDiskBytes")
    total = _get(payload, "total_disk_bytes", "totalDiskBytes")
    queue = _get(payload, "queue_depth", "queueDepth")
    return {
        "queue": float(sum(queue.values())) if isinstance(queue, dict) else None,
        "disk": round(100.0 * free / total, 1) if free is not None and total else None,
        "temp": _get(payload, "cpu_temp_c", "cpuTempC"),
        "battery": _get(payload, "battery_pct", "batteryPct"),
    }


def rollout_states(root: Path, url: str | None = None) -> dict[str, str] | None:
    """Each device's state in its latest rollout (OTA module), or None when not installed."""
    from cloud_stub.review.publish import rollout_module

    module = rollout_module()
    if module is None:
        return None
    states: dict[str, str] = {}
    for row in module.status(root, url=url):  # oldest rollout first: later ones overwrite
        states[row["device"]] = f"{row['pack']}: {row['outcome']}"
    return states


def fleet(db: Database, root: Path, url: str | None = None) -> tuple[list[DeviceRow], bool]:
    """Rows for every device known to ingest; the flag says whether rollout states are known.
    ``url``: the PostgreSQL store (the rollouts read the devices' reports from it)."""
    rollouts = rollout_states(root, url)
    rows: list[DeviceRow] = []
    for dev in db.execute("SELECT * FROM devices ORDER BY device_id").fetchall():
        history = [
            json.loads(r["payload"])
            for r in db.execute(
                "SELECT payload FROM telemetry WHERE device_id = ? ORDER BY sent_at DESC LIMIT ?",
                (dev["device_id"], HISTORY),
            )
        ]
        history.reverse()
        latest = history[-1] if history else {}
        figures = _figures(latest)
        series: dict[str, list[float]] = {"queue": [], "disk": [], "temp": [], "battery": []}
        for payload in history:
            for name, value in _figures(payload).items():
                if value is not None:
                    series[name].append(float(value))
        rows.append(
            DeviceRow(
                device_id=dev["device_id"],
                last_seen=dev["last_seen"],
                status=dev["status"],
                last_sync=_get(latest, "last_sync_at", "lastSyncAt"),
                queue_depth=int(figures["queue"]) if figures["queue"] is not None else None,
                disk_free_pct=figures["disk"],
                temperature_c=figures["temp"],
                model_version=_get(latest, "model_version", "modelVersion"),
                agent_version=_get(latest, "agent_version", "agentVersion") or dev["agent_version"],
                rollout=(rollouts or {}).get(dev["device_id"]),
                history=series,
                power=power_cells(latest),
            )
        )
    return rows, rollouts is not None


@dataclass
class ImportedRow:
    """Trail-camera events ``camtrap import`` sent for one deployment, through one device."""

    deployment_id: str
    device_id: str
    events: int
    cameras: list[str]  # each camera's label (make-model, serial, name)
    sources: list[str]  # the cards or folders read
    last_received: str


def imported(db: Database) -> list[ImportedRow]:
    """Imported events per deployment; empty on a store from before imports existed."""
    if "import_id" not in table_columns(db, "events"):
        return []
    rows: dict[tuple[str, str], ImportedRow] = {}
    for r in db.execute(
        "SELECT deployment_id, device_id, camera_make, camera_model, camera_serial, "
        "camera_name, import_source, count(*) AS n, max(received_at) AS last "
        "FROM events WHERE import_id IS NOT NULL GROUP BY deployment_id, device_id, "
        "camera_make, camera_model, camera_serial, camera_name, import_source "
        "ORDER BY deployment_id, device_id"
    ):
        key = (r["deployment_id"], r["device_id"])
        row = rows.setdefault(key, ImportedRow(*key, 0, [], [], r["last"]))
        row.events += r["n"]
        row.last_received = max(row.last_received, r["last"])
        label = Camera(*(r[f"camera_{part}"] for part in CAMERA_PARTS)).label()
        if label not in row.cameras:
            row.cameras.append(label)
        if r["import_source"] and r["import_source"] not in row.sources:
            row.sources.append(r["import_source"])
    return list(rows.values())


def sparkline(values: list[float], width: int = 120, height: int = 28) -> str:
    """SVG polyline points for ``values`` scaled into the box (server-side: no chart library)."""
    if len(values) < 2:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    step = width / (len(values) - 1)
    return " ".join(
        f"{i * step:.1f},{height - 2 - (v - low) / span * (height - 4):.1f}"
        for i, v in enumerate(values)
    )
