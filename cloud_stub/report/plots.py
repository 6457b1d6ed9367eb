"""The report's plots (matplotlib, Agg: no display needed). Every axis says what it counts."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from cloud_stub.report.data import ReportData


def _empty(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="gray")
    ax.set_xticks([])
    ax.set_yticks([])


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def detections_per_species(data: ReportData, path: Path) -> Path:
    items = data.detections.most_common()
    fig, ax = plt.subplots(figsize=(8, max(3.0, 0.4 * len(items) + 1.5)))
    if items:
        names = [n for n, _ in items][::-1]
        counts = [c for _, c in items][::-1]
        bars = ax.barh(names, counts, color="#4c72b0")
        ax.bar_label(bars, padding=3)
        ax.set_xlabel("detections (events with the species)")
        ax.set_ylabel("species")
    else:
        _empty(ax, "no animal detections yet")
    ax.set_title("Detections per species")
    return _save(fig, path)


def activity_by_hour(data: ReportData, path: Path) -> Path:
    species = [n for n, _ in data.detections.most_common(8)]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    if species:
        hours = list(range(24))
        for name in species:
            ax.plot(hours, [data.hours[name].get(h, 0) for h in hours], marker="o", label=name)
        ax.set_xticks(range(0, 24, 2))
        ax.set_xlim(-0.5, 23.5)
        ax.set_xlabel("hour of day (trap's local time)")
        ax.set_ylabel("detections")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(title="species", fontsize="small")
        ax.grid(alpha=0.3)
    else:
        _empty(ax, "no animal detections yet")
    ax.set_title("Activity by hour of day, per species")
    return _save(fig, path)


def blank_ratio(data: ReportData, path: Path) -> Path:
    devices = list(data.blank_ratio)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(devices) + 2), 4))
    if devices:
        ratios = [b / n if n else 0 for b, n in data.blank_ratio.values()]
        bars = ax.bar(devices, ratios, color="#dd8452")
        ax.bar_label(bars, labels=[f"{b}/{n}" for b, n in data.blank_ratio.values()], padding=2)
        ax.set_ylim(0, 1.1)
        ax.set_ylabel("blank events / all events")
        ax.set_xlabel("device")
    else:
        _empty(ax, "no events yet")
    ax.set_title("Blank ratio per device")
    return _save(fig, path)


def device_health(data: ReportData, path: Path) -> Path:
    panels = (
        ("free_disk_gb", "free disk (GB)"),
        ("queue_depth", "upload queue (items)"),
        ("cpu_temp_c", "CPU temperature (°C)"),
        ("last_sync_age_min", "minutes since last sync"),
    )
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 9), sharex=True)
    for ax, (attr, label) in zip(axes, panels, strict=True):
        plotted = False
        for device, points in sorted(data.health.items()):
            xs = [p.at for p in points if getattr(p, attr) is not None]
            ys = [getattr(p, attr) for p in points if getattr(p, attr) is not None]
            if xs:
                ax.plot(xs, ys, marker=".", label=device)
                plotted = True
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if not plotted:
            ax.text(
                0.5,
                0.5,
                "no telemetry",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color="gray",
            )
    if data.health:
        axes[0].legend(title="device", fontsize="small")
    times = [p.at for points in data.health.values() for p in points]
    if times and min(times) == max(times):
        # One heartbeat: matplotlib would stretch the axis over years; show an hour around it.
        axes[-1].set_xlim(min(times) - timedelta(minutes=30), max(times) + timedelta(minutes=30))
    axes[-1].set_xlabel("time of heartbeat (UTC)")
    axes[-1].xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M", tz="UTC"))
    fig.autofmt_xdate()
    fig.suptitle("Device health over time")
    return _save(fig, path)
