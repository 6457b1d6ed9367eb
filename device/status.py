"""``camtrap status``: what the trap holds, read without disturbing a running agent."""

from __future__ import annotations

import sqlite3
from typing import Any

from device import __version__
from device.clock import ClockProbe
from device.config import Settings
from device.store.db import open_readonly
from device.store.store import DB_NAME, SPOOL_DIR, free_bytes


def collect(settings: Settings) -> dict[str, Any]:
    data_dir = settings.storage.data_dir
    clock = ClockProbe(settings.clock).probe()
    spool = settings.storage.fallback_dir / SPOOL_DIR
    report: dict[str, Any] = {
        "version": __version__,
        "device_id": settings.device.id,
        "data_dir": str(data_dir),
        "clock": {"source": clock.source, "synced": clock.synced},
        "free_disk_bytes": free_bytes(data_dir),
        "fallback_spool_items": len(list(spool.glob("*.json"))) if spool.is_dir() else 0,
        "events": 0,
        "media": 0,
        "media_by_state": {},
        "outbox_pending": 0,
        "last_capture": None,
        "unsynchronised_captures": 0,
        "counters": {},
        "database": "missing",
    }
    db_path = data_dir / DB_NAME
    if not db_path.exists():
        return report
    try:
        conn = open_readonly(db_path)
    except sqlite3.Error as exc:
        report["database"] = f"unreadable: {exc}"
        return report
    try:
        report["database"] = "ok"
        report.update(_counts(conn))
    finally:
        conn.close()
    return report


def _counts(conn: sqlite3.Connection) -> dict[str, Any]:
    one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
    last = conn.execute(
        "SELECT captured_at, media_id, clock_source FROM media ORDER BY captured_at DESC LIMIT 1"
    ).fetchone()
    return {
        "events": one("SELECT COUNT(*) FROM events"),
        "media": one("SELECT COUNT(*) FROM media"),
        "media_by_state": dict(
            conn.execute("SELECT state, COUNT(*) FROM media GROUP BY state").fetchall()
        ),
        "outbox_pending": one("SELECT COUNT(*) FROM outbox WHERE state IN ('pending','inflight')"),
        "last_capture": dict(last) if last else None,
        "unsynchronised_captures": one("SELECT COUNT(*) FROM media WHERE clock_synced = 0"),
        "counters": dict(conn.execute("SELECT name, value FROM counters").fetchall()),
        "schema_version": one("SELECT version FROM schema_version"),
    }


def render(report: dict[str, Any]) -> str:
    last = report["last_capture"]
    clock = report["clock"]
    states = ", ".join(f"{k} {v}" for k, v in sorted(report["media_by_state"].items())) or "-"
    free = report["free_disk_bytes"]
    rows = [
        ("camtrap", report["version"]),
        ("device", report["device_id"]),
        ("data dir", f"{report['data_dir']} (database {report['database']})"),
        ("last capture", f"{last['captured_at']} ({last['media_id']})" if last else "none"),
        ("events", report["events"]),
        ("media", f"{report['media']} ({states})"),
        ("outbox pending", report["outbox_pending"]),
        ("free disk", f"{free / 1e9:.2f} GB" if free is not None else "unknown (data dir gone)"),
        ("clock", f"{clock['source']} ({'synced' if clock['synced'] else 'NOT synced'})"),
        ("unsynced captures", report["unsynchronised_captures"]),
        ("fallback spool", report["fallback_spool_items"]),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
