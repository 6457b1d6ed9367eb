"""``write_report``: the plots and a text summary, written whole into one directory."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from cloud_stub.models.serving import parse_serving
from cloud_stub.report import plots
from cloud_stub.report.data import ReportData, load

PLOTS = {
    "detections_per_species.png": plots.detections_per_species,
    "activity_by_hour.png": plots.activity_by_hour,
    "blank_ratio_per_device.png": plots.blank_ratio,
    "device_health.png": plots.device_health,
}


def summary(data: ReportData) -> str:
    lines = [
        "camtrap report",
        f"devices: {len(data.devices)}; events: {data.events}; media: {data.media}; "
        f"human-verified observations used: {data.human_observations}",
        "",
        "detections per species (events):",
    ]
    lines += [f"  {name:30} {n:6}" for name, n in data.detections.most_common()] or ["  none"]
    lines += ["", "blank events per device:"]
    lines += [
        f"  {device:30} {b:6} of {n:6} ({b / n:.0%})" if n else f"  {device:30} no events"
        for device, (b, n) in data.blank_ratio.items()
    ] or ["  none"]
    lines += ["", "latest health per device:"]
    for device, points in sorted(data.health.items()):
        p = points[-1]
        parts = [f"at {p.at.isoformat()}"]
        if p.free_disk_gb is not None:
            parts.append(f"free disk {p.free_disk_gb:.1f} GB")
        if p.queue_depth is not None:
            parts.append(f"queue {p.queue_depth}")
        serving = parse_serving(p.model_version)
        if serving is not None:
            # The model, then the head serving on it (a trap without one says "head none").
            parts.append(f"model {serving.backbone}, head {serving.head or 'none'}")
        if p.cpu_temp_c is not None:
            parts.append(f"CPU {p.cpu_temp_c:.1f} °C")
        if p.last_sync_age_min is not None:
            parts.append(f"last sync {p.last_sync_age_min:.0f} min before")
        lines.append(f"  {device}: " + ", ".join(parts))
    if not data.health:
        lines.append("  no telemetry received")
    return "\n".join(lines) + "\n"


def write_report(ingest_root: Path, out_dir: Path, *, url: str | None = None) -> Path:
    """Write the PNGs and ``summary.txt`` to ``out_dir``; returns its absolute path.

    The files are made in a temporary directory beside it and moved in together, so a failed
    run leaves the previous report as it was. ``url``: the PostgreSQL store (``--db``).
    """
    data = load(ingest_root, url)
    out_dir = Path(os.path.abspath(out_dir))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        for name, draw in PLOTS.items():
            draw(data, work / name)
        (work / "summary.txt").write_text(summary(data), encoding="utf-8")
        out_dir.mkdir(exist_ok=True)
        for item in work.iterdir():
            os.replace(item, out_dir / item.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out_dir
