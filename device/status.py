"""``camtrap status``: what the trap holds, read without disturbing a running agent.

The counts come from the store's repositories over a read-only connection
(``health.inspect_open``); this module writes no SQL. The power lines come from the config
(profile, capture and sync windows, the radio switch) and from the ``power-state.json`` the
agent leaves in the data dir (battery, shedding, radio on/off; ``device.power.state_file``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from device import __version__
from device.clock import ClockProbe
from device.config import Settings
from device.contracts.windows import Schedule
from device.exitcodes import Exit
from device.ota.layout import active_pack_path
from device.power.report import SHED_STEPS
from device.power.state_file import PowerStateError, load_report
from device.store.db import DatabaseError, Source, schema_version
from device.store.events import Events
from device.store.health import StoreHealth, StoreState, inspect_open
from device.store.imports import Imports
from device.store.kv import Counters
from device.store.media import Media
from device.store.outbox import Outbox
from device.store.schema import IMPORTS_SCHEMA
from device.store.store import SPOOL_DIR, free_bytes
from device.vision.calibration import operating_point_of
from device.vision.pack import ModelPack, PackError, load_pack


def collect(settings: Settings, *, now: datetime | None = None) -> dict[str, Any]:
    """The report; ``report["store"]`` says whether the counts in it can be trusted.

    Counts the store cannot give (no data dir, unreadable database) are None, never 0.
    ``now`` (aware; default the system clock) places the next capture and sync windows.
    A power state file that cannot be read makes the exit code ``Exit.DATA_ERROR`` (unless the
    store's own trouble already set one) and ``exit_message`` says why in one line.
    """
    data_dir = settings.storage.data_dir
    clock = ClockProbe(settings.clock).probe()
    spool = settings.storage.fallback_dir / SPOOL_DIR
    health, conn = inspect_open(data_dir)
    unknown = not health.readable
    report: dict[str, Any] = {
        "version": __version__,
        "device_id": settings.device.id,
        "data_dir": str(data_dir),
        "clock": {"source": clock.source, "synced": clock.synced},
        "free_disk_bytes": free_bytes(data_dir),
        "fallback_spool_items": len(list(spool.glob("*.json"))) if spool.is_dir() else 0,
        "events": None if unknown else 0,
        "imports": None if unknown else _no_imports(),
        "media": None if unknown else 0,
        "media_by_state": {},
        "outbox_pending": None if unknown else 0,
        "deferred_blanks": None if unknown else {"frames": 0, "bytes": 0},
        "last_capture": None,
        "unsynchronised_captures": None if unknown else 0,
        "counters": {},
        "database": _database_word(health),
        "store": health.as_dict(),
        "media_files": health.media_files,
        "exit_code": health.exit_code,
    }
    pack, problem = _serving_pack(settings)
    report["model"] = model_section(settings, pack, problem)
    report["blank_filter"] = blank_filter(settings, pack, problem)
    report["power"] = power_section(settings, now or datetime.now(UTC))
    if report["power"]["problem"] and not report["exit_code"]:
        report["exit_code"] = int(Exit.DATA_ERROR)
        report["exit_message"] = report["power"]["problem"]
    if conn is None:
        return report
    try:
        report.update(_counts(conn))
    except DatabaseError as exc:  # read fine a moment ago: the file changed under us
        report["database"] = f"unreadable: {exc}"
        report["store"].update(state=StoreState.UNREADABLE.value, reason="corrupt", detail=str(exc))
        report["exit_code"] = report["store"]["exit_code"] = int(Exit.STORE_UNREADABLE)
    finally:
        conn.close()
    return report


def _serving_pack(settings: Settings) -> tuple[ModelPack | None, str | None]:
    """The pack the agent would load (verified, never run) or why there is none."""
    if not settings.vision.enabled:
        return None, "vision.enabled is false: nothing is classified"
    try:
        pack = load_pack(active_pack_path(settings), backbones=[Path(settings.vision.pack)])
    except PackError as exc:
        return None, str(exc)
    return pack, None


def model_section(
    settings: Settings, pack: ModelPack | None = None, problem: str | None = None
) -> dict[str, Any]:
    """What classifies this trap's events: the pack and its ``classified_by`` (for a head,
    ``backbone@version+head@version``), the head and the backbone it runs on."""
    if pack is None and problem is None:
        pack, problem = _serving_pack(settings)
    if pack is None:
        return {"pack": None, "classified_by": None, "kind": None, "problem": problem}
    return {
        "pack": str(pack.path),
        "classified_by": pack.classified_by,
        "kind": pack.kind,
        "head": f"{pack.name}@{pack.version}" if pack.head is not None else None,
        "backbone": pack.model_from if pack.head is not None else None,
        "backbone_pack": str(pack.backbone_path) if pack.backbone_path is not None else None,
        "problem": None,
    }


def blank_filter(
    settings: Settings, pack: ModelPack | None = None, problem: str | None = None
) -> dict[str, Any]:
    """What a blank verdict means on this trap: the policy, and the threshold the pack the
    agent would load serves with (and where it came from). Reads the pack, never the model."""
    vision = settings.vision
    out: dict[str, Any] = {
        "policy": vision.blank_media_policy,
        "target_recall": vision.target_recall,
        "pack": None,
        "threshold": None,
        "source": None,
        "problem": None,
    }
    if pack is None and problem is None:
        pack, problem = _serving_pack(settings)
    if not vision.enabled:
        out["problem"] = problem
        return out
    out["pack"] = str(active_pack_path(settings))
    if pack is None:
        out["problem"] = problem
        return out
    try:
        point = operating_point_of(pack, vision)
    except PackError as exc:
        out["problem"] = str(exc)
        return out
    out["threshold"] = None if point.calls_nothing_blank else point.value
    out["source"] = point.describe()
    return out


def power_section(settings: Settings, now: datetime) -> dict[str, Any]:
    """The profile and windows from the config; battery, shedding and radio from the power
    state the agent left (``state`` None: none yet, or ``problem`` says why it is unreadable)."""
    zone = settings.device.timezone
    up = settings.uplink
    out: dict[str, Any] = {
        "profile": settings.power.profile,
        "state": None,
        "problem": None,
        "radio_control": up.radio_control,
        "radio": up.radio,
        "capture_windows": (
            windows_view(settings.power.capture_windows, zone, now)
            if settings.power.profile == "scheduled"
            else None
        ),
        "sync_windows": windows_view(up.sync_windows, zone, now),
    }
    try:
        state = load_report(settings.storage.data_dir)
    except PowerStateError as exc:
        out["problem"] = f"power state: {exc}"
        return out
    if state is not None:
        battery = state.battery
        out["state"] = {
            "board": state.board,
            "profile": state.profile,  # what the agent ran with when it wrote the file
            "battery_percent": battery.percent if battery else None,
            "battery_voltage_v": battery.voltage_v if battery else None,
            "battery_source": battery.source if battery else None,
            "shed_level": state.shed_level,
            "shed_steps": list(state.shed_steps),
            "radio_on": state.radio_on,
            "days_left": state.days_left,
        }
    return out


def windows_view(specs: list[str], zone: str, now: datetime) -> dict[str, Any]:
    """Daily windows, whether one is open at ``now`` and when that next changes (local time)."""
    schedule = Schedule.parse(specs, zone)
    change = schedule.next_change(now)
    return {
        "windows": list(specs),
        "zone": zone,
        "open": schedule.is_open(now),
        "next_change": _local_minutes(change, zone) if change else None,
    }


def _local_minutes(at: datetime, zone: str) -> str:
    return at.astimezone(ZoneInfo(zone)).isoformat(timespec="minutes")


def _power_rows(power: dict[str, Any]) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = [("power profile", power["profile"])]
    state = power["state"]
    if power["problem"]:
        rows.append(("power state", f"UNREADABLE: {power['problem']}"))
    elif state is None:
        rows.append(("power state", "no power state yet (the agent has not run)"))
    else:
        rows += [
            ("battery", _battery_line(state)),
            ("shedding", _shedding_line(state)),
            ("radio", _radio_line(power, state["radio_on"])),
        ]
    if power["capture_windows"] is not None:
        rows.append(("capture windows", _windows_line(power["capture_windows"], "capture")))
    rows.append(("sync windows", _windows_line(power["sync_windows"], "sync")))
    return rows


def _battery_line(state: dict[str, Any]) -> str:
    percent, volts = state["battery_percent"], state["battery_voltage_v"]
    if percent is None and volts is None:
        return "no gauge reading (battery.gauge = none, or the gauge gave nothing)"
    parts = [f"{percent:.0f}%" if percent is not None else "?%"]
    if volts is not None:
        parts.append(f"{volts:.2f} V")
    line = " ".join(parts)
    if state["battery_source"]:
        line += f" ({state['battery_source']})"
    if state["days_left"] is not None:
        line += f"; about {state['days_left']:.1f} days left"
    return line


def _shedding_line(state: dict[str, Any]) -> str:
    steps = state["shed_steps"]
    if not steps:
        return "none (all work runs)"
    return f"{', '.join(steps)} shed ({state['shed_level']} of {len(SHED_STEPS)} steps)"


def _radio_line(power: dict[str, Any], on: bool) -> str:
    word = "on" if on else "off"
    if power["radio_control"] == "none":
        return f"{word} (not switched: uplink.radio_control = none)"
    dry = " (dry-run: recorded, not run)" if power["radio_control"] == "dry-run" else ""
    return f"{word}; switched by nmcli radio {power['radio']}{dry}"


def _windows_line(view: dict[str, Any], what: str) -> str:
    if not view["windows"]:
        return "always (no sync windows)" if what == "sync" else "always"
    spans = ", ".join(view["windows"])
    if view["next_change"] is None:
        return f"{spans} ({view['zone']}): always open"
    state = "OPEN now, closes" if view["open"] else "closed, next opens"
    return f"{spans} ({view['zone']}): {state} {view['next_change']}"


def _model_line(model: dict[str, Any]) -> str:
    if not model.get("classified_by"):
        return f"NONE: {model.get('problem')}"
    if model.get("head"):
        return f"head {model['head']} on backbone {model['backbone']} ({model['pack']})"
    return f"{model['classified_by']} ({model['pack']})"


def _blank_filter_line(blank: dict[str, Any]) -> str:
    head = f"policy {blank['policy']}, target recall {blank['target_recall']:g}"
    if blank["problem"]:
        return f"{head}; {blank['problem']}"
    return f"{head}; threshold {blank['source']}"


def _database_word(health: StoreHealth) -> str:
    """The old ``database`` field: ok, missing, or unreadable with the reason."""
    if health.state is StoreState.NO_DATA_DIR:
        return "missing"
    if health.state is StoreState.UNREADABLE:
        return f"unreadable ({health.reason}): {health.detail}"
    try:
        present = health.db_path.exists()
    except OSError:  # a data dir we may not search; UNREADABLE said so above
        present = True
    if not present:
        return "missing"
    return f"ok; {health.detail}" if health.detail else "ok"


def _counts(source: Source) -> dict[str, Any]:
    media = Media(source)
    last = media.latest()
    held = media.deferred_blanks()
    version = schema_version(source)
    return {
        "events": Events(source).count(),
        "media": media.count(),
        "media_by_state": {str(state): n for state, n in media.count_by_state().items()},
        # Everything not yet acknowledged, waiting items included.
        "outbox_pending": Outbox(source).left()[0],
        # Frames judged blank but kept whole in case the filter was wrong (policy "defer").
        "deferred_blanks": {"frames": held.frames, "bytes": held.bytes},
        "last_capture": (
            None
            if last is None
            else {
                # As stored: ISO 8601 with the offset the trap had when it took the frame.
                "captured_at": last.captured_at.isoformat(),
                "media_id": last.media_id,
                "clock_source": last.clock_source,
            }
        ),
        "unsynchronised_captures": media.unsynchronised_count(),
        "counters": Counters(source).all(),
        "schema_version": version,
        # A store the agent has not migrated yet (read-only here) has no imports to count.
        "imports": Imports(source).summary() if version >= IMPORTS_SCHEMA else _no_imports(),
    }


def _no_imports() -> dict[str, Any]:
    return {"imports": 0, "running": 0, "events": 0, "media": 0, "failed_files": 0, "last": None}


def render(report: dict[str, Any]) -> str:
    last = report["last_capture"]
    clock = report["clock"]
    store = report.get("store") or {}
    states = ", ".join(f"{k} {v}" for k, v in sorted(report["media_by_state"].items())) or "-"
    free = report["free_disk_bytes"]
    unknown = "UNKNOWN (store not readable)"

    def count(value: Any) -> Any:
        return unknown if value is None else value

    rows = [
        ("camtrap", report["version"]),
        ("device", report["device_id"]),
        (
            "data dir",
            f"{report['data_dir']} (NOT THERE: is the card mounted?)"
            if store.get("state") == "no_data_dir"
            else f"{report['data_dir']} (database {report['database']})",
        ),
        ("store", _store_line(store)),
        (
            "last capture",
            f"{last['captured_at']} ({last['media_id']})"
            if last
            else (unknown if report["events"] is None else "none"),
        ),
        ("events", count(report["events"])),
        ("media", unknown if report["media"] is None else f"{report['media']} ({states})"),
        ("media files", report.get("media_files", 0)),
        ("imported", _imports_line(report.get("imports"), unknown)),
        ("outbox pending", count(report["outbox_pending"])),
        ("deferred blanks", _deferred_line(report.get("deferred_blanks"))),
        ("model", _model_line(report.get("model") or {})),
        ("blank filter", _blank_filter_line(report["blank_filter"])),
        ("free disk", f"{free / 1e9:.2f} GB" if free is not None else "unknown (data dir gone)"),
        ("clock", f"{clock['source']} ({'synced' if clock['synced'] else 'NOT synced'})"),
        ("unsynced captures", count(report["unsynchronised_captures"])),
        ("fallback spool", report["fallback_spool_items"]),
    ]
    if report.get("power") is not None:
        rows += _power_rows(report["power"])
    recovered = store.get("recovery")
    if recovered:
        rows.append(
            (
                "db recovered",
                f"{recovered.get('at')}: damaged database kept as {recovered.get('aside')},"
                f" {recovered.get('rebuilt_media')} captures rebuilt from the files",
            )
        )
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def _imports_line(imports: dict[str, Any] | None, unknown: str) -> str:
    """Events and photos from trail-camera cards, and how the last import ended."""
    if imports is None:
        return unknown
    if not imports["imports"]:
        return "none (camtrap import PATH brings in a trail camera's card)"
    line = (
        f"{imports['events']} events, {imports['media']} photos from {imports['imports']}"
        f" imports; {imports['failed_files']} files not imported"
    )
    last = imports.get("last")
    if last:
        line += f"; last: {last['source']} {last['state']} ({last['message'] or '-'})"
    return line


def _deferred_line(held: dict[str, int] | None) -> str:
    if held is None:
        return "UNKNOWN (store not readable)"
    return (
        f"{held['frames']} frames, {held['bytes'] / 1e6:.1f} MB"
        " (judged blank, kept whole: sent last on Wi-Fi, first to go when space is short)"
    )


def _store_line(store: dict[str, Any]) -> str:
    if not store:
        return "unknown"
    if store["state"] in ("ok", "empty"):
        return store["state"] + (f" ({store['detail']})" if store.get("detail") else "")
    return f"{store['state'].upper()}: {store['message']}"
