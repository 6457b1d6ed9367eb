"""The numbers behind the reports, read from the ingest store (read-only)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cloud_stub.export.preference import preferred_observations
from cloud_stub.export.source import open_readonly


@dataclass
class HealthPoint:
    at: datetime
    free_disk_gb: float | None
    queue_depth: int | None
    cpu_temp_c: float | None
    last_sync_age_min: float | None  # minutes since the device's last sync, at that heartbeat
    model_version: str | None = None  # the pack serving when the heartbeat left the trap


@dataclass
class ReportData:
    detections: Counter[str] = field(default_factory=Counter)  # species -> events
    hours: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    blank_ratio: dict[str, tuple[int, int]] = field(default_factory=dict)  # device -> (blank, all)
    health: dict[str, list[HealthPoint]] = field(default_factory=dict)
    devices: list[str] = field(default_factory=list)
    events: int = 0
    media: int = 0
    human_observations: int = 0


def _species(row: dict[str, Any]) -> str | None:
    if row["observation_type"] != "animal":
        return None
    return row.get("common_name") or row.get("scientific_name") or "animal (unnamed)"


def _telemetry_field(payload: dict[str, Any], name: str, wire: str) -> Any:
    """One field of a stored heartbeat (JSON, so any type). Stored with Python names today;
    the wire's camelCase is accepted too."""
    return payload.get(name, payload.get(wire))


def load(ingest_root: Path, url: str | None = None) -> ReportData:
    data = ReportData()
    db = open_readonly(ingest_root, url)
    try:
        events = {r["event_id"]: dict(r) for r in db.execute("SELECT * FROM events")}
        observations = [dict(r) for r in db.execute("SELECT * FROM observations")]
        data.media = db.execute("SELECT count(*) FROM media").fetchone()[0]
        data.devices = [r[0] for r in db.execute("SELECT device_id FROM devices ORDER BY 1")]
        telemetry = [dict(r) for r in db.execute("SELECT * FROM telemetry ORDER BY sent_at")]
    finally:
        db.close()
    data.events = len(events)
    chosen = preferred_observations(observations)
    data.human_observations = sum(o["classification_method"] == "human" for o in chosen)
    # One detection per species per event: a 5-frame burst of one fox is one fox sighting.
    species_by_event: dict[str, set[str]] = defaultdict(set)
    for o in chosen:
        name = _species(o)
        if name:
            species_by_event[o["event_id"]].add(name)
    for event_id, names in species_by_event.items():
        start = (
            datetime.fromisoformat(events[event_id]["event_start"]) if event_id in events else None
        )
        for name in names:
            data.detections[name] += 1
            if start is not None:
                data.hours[name][start.hour] += 1  # local time as the trap recorded it
    blank_events: dict[str, set[str]] = defaultdict(set)
    for o in chosen:
        if o["observation_type"] == "blank" and o["event_id"] not in species_by_event:
            blank_events[o["event_id"]].add(o["observation_id"])
    per_device: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for event_id, ev in events.items():
        per_device[ev["device_id"]][1] += 1
        per_device[ev["device_id"]][0] += event_id in blank_events
    data.blank_ratio = {d: (b, n) for d, (b, n) in sorted(per_device.items())}
    for row in telemetry:
        payload = json.loads(row["payload"])
        at = datetime.fromisoformat(row["sent_at"])
        free = _telemetry_field(payload, "free_disk_bytes", "freeDiskBytes")
        queue = _telemetry_field(payload, "queue_depth", "queueDepth")
        sync = _telemetry_field(payload, "last_sync_at", "lastSyncAt")
        data.health.setdefault(row["device_id"], []).append(
            HealthPoint(
                at=at,
                free_disk_gb=free / 1e9 if free is not None else None,
                queue_depth=sum(queue.values()) if isinstance(queue, dict) else None,
                cpu_temp_c=_telemetry_field(payload, "cpu_temp_c", "cpuTempC"),
                last_sync_age_min=(at - datetime.fromisoformat(sync)).total_seconds() / 60
                if sync
                else None,
                model_version=_telemetry_field(payload, "model_version", "modelVersion"),
            )
        )
    return data
