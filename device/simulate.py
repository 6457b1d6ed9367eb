"""``camtrap simulate``: the real agent, driven by gpiozero MockFactory pins and a replay or
synthetic camera, through a scripted series of PIR edges and one timelapse tick.

The summary is read from the store's repositories over a read-only connection; its last
line (also in ``--json`` as ``line``) is the one ``make demo`` extends.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device.agent import Agent
from device.capture.types import CapturedFrame, EventClosed
from device.config import Settings
from device.errors import UserError
from device.exitcodes import Exit
from device.hardware.camera_synthetic import SyntheticCamera
from device.store.db import Source
from device.store.events import Events
from device.store.health import StoreState, inspect, inspect_open
from device.store.media import Media
from device.store.observations import Observations
from device.store.outbox import Outbox
from device.store.recovery import DAMAGE_REASONS
from device.store.store import DB_NAME
from device.store.vocabulary import EventState, MediaState

SCENE_GAP_S = SyntheticCamera.NEW_SCENE_GAP_S


@dataclass
class SimulationPlan:
    triggers: int = 5
    images: Path | None = None
    data_dir: Path = Path("camtrap-sim")
    hold_s: float = 0.15
    timelapse: bool = True


@dataclass
class SimulationResult:
    data_dir: Path
    triggers_sent: int
    triggers_seen: int
    stats: dict[str, Any] = field(default_factory=dict)
    # What each event really showed, per the synthetic camera (empty for replayed images).
    scenes: list[dict[str, Any]] = field(default_factory=list)
    # The power profile at work: camera starts and on-time, edges outside capture windows.
    power: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        s = self.stats
        return (
            f"demo: triggers={self.triggers_seen} events={s['events']} media={s['media']}"
            f" stored={s['stored']} failed={s['failed']}"
            f" animals={s['animals']} blanks={s['blanks']}"
        )


def simulation_settings(base: Settings, plan: SimulationPlan) -> Settings:
    """The given settings, with the hardware swapped for simulated parts and short timings.

    Only what simulation needs is changed; everything else (thresholds, device id, ...) comes
    from the user's config or the defaults.
    """
    data = base.model_dump()
    data["pir"]["pin_factory"] = "mock"
    camera = data["camera"]
    if plan.images is not None:
        camera.update(backend="replay", replay_dir=plan.images)
    elif camera["backend"] == "picamera2":
        camera["backend"] = "synthetic"
    if camera["backend"] == "synthetic" and tuple(camera["main_size"]) == (2304, 1296):
        camera["main_size"] = (1280, 720)  # the Pi default is costlier to render than needed
    data["capture"].update(
        burst_frames=3,
        burst_interval_s=0.1,
        max_burst_frames=6,
        cooldown_s=0.3,
        timelapse_interval_s=0,
    )
    data["storage"]["data_dir"] = plan.data_dir
    data["storage"]["fallback_dir"] = plan.data_dir.parent / (plan.data_dir.name + "-fallback")
    data["clock"]["manual_marker"] = plan.data_dir / "clock-manual"
    if data["device"]["deployment_id"] == "":
        data["device"]["deployment_id"] = "sim-deployment"
    return Settings.model_validate(data)


def prepare_data_dir(data_dir: Path) -> None:
    """Create the simulation's data dir if needed; UserError (one line, an exit code) when it
    is a file, cannot be created, or holds a store that cannot be written or read.

    A damaged database is not refused: the agent moves it aside and rebuilds it, as on a trap.
    """
    if data_dir.exists() and not data_dir.is_dir():
        raise UserError(
            f"--data-dir {data_dir} is a file, not a directory: give a directory"
            " (it is created if missing)",
            Exit.NO_DATA_DIR,
        )
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(
            f"--data-dir {data_dir}: cannot create it ({exc.strerror or exc})", Exit.CANT_CREATE
        ) from exc
    health = inspect(data_dir, need_write=True, busy_timeout_s=2.0)
    # The agent itself rebuilds a damaged database, or a missing one from the media files.
    if health.state is StoreState.UNREADABLE and health.reason not in (
        *DAMAGE_REASONS,
        "no_database",
    ):
        raise UserError(health.message(), health.exit_code)


class SceneTruth:
    """The ground truth the synthetic camera puts in each frame's ``meta``, per event: the
    scene's kind and, when an animal was in view in any frame, its species. The store never
    keeps it (a real camera knows no truth); a scripted reviewer needs it."""

    def __init__(self, sink: Callable[[CapturedFrame | EventClosed], None]) -> None:
        self._sink = sink
        self.events: dict[str, dict[str, Any]] = {}

    def __call__(self, item: CapturedFrame | EventClosed) -> None:
        if isinstance(item, CapturedFrame) and "truth" in item.frame.meta:
            meta = item.frame.meta
            event = self.events.setdefault(
                item.event_id,
                {
                    "event_id": item.event_id,
                    "scene": meta.get("scene"),
                    "kind": meta.get("kind"),
                    "truth": "blank",
                    "species": None,
                },
            )
            if meta["truth"] == "animal":
                event["truth"], event["species"] = "animal", meta.get("species")
        self._sink(item)


def run_simulation(base: Settings, plan: SimulationPlan) -> SimulationResult:
    prepare_data_dir(plan.data_dir)
    settings = simulation_settings(base, plan)
    agent = Agent(settings)
    # Between capture and the store, before anything is captured: the frames' truth is read
    # and the frames go on unchanged.
    truth = SceneTruth(agent.capture.sink)
    agent.capture.sink = truth
    agent.start()
    try:
        assert agent.pir is not None
        pin = agent.pir.mock_pin()
        for _ in range(plan.triggers):
            pin.drive_high()
            time.sleep(plan.hold_s)
            pin.drive_low()
            agent.capture.wait_idle(timeout=30)
            # Past the cooldown, and far enough apart that the synthetic camera starts a new
            # scene for the next trigger (it cuts scenes at gaps of NEW_SCENE_GAP_S).
            time.sleep(max(settings.capture.cooldown_s, SCENE_GAP_S) + 0.05)
        if plan.timelapse:
            agent.capture.timelapse_now()
            agent.capture.wait_idle(timeout=30)
        if agent.vision is not None:
            agent.vision.wait_idle(timeout=120)
    finally:
        agent.stop()
    energy = agent.energy.snapshot()
    return SimulationResult(
        data_dir=plan.data_dir.resolve(),
        triggers_sent=plan.triggers,
        triggers_seen=agent.capture.stats.triggers,
        stats=store_stats(plan.data_dir / DB_NAME),
        scenes=list(truth.events.values()),
        power={
            "profile": settings.power.profile,
            "camera_starts": agent.camera_power.starts,
            "camera_on_s": round(energy.camera_on_s, 3),
            "uptime_s": round(energy.uptime_s, 3),
            "captures": energy.captures,
            "outside_window": agent.capture.stats.outside_window,
        },
    )


def store_stats(db_path: Path) -> dict[str, Any]:
    """The counts of the store at ``db_path``; UserError if it cannot be read truthfully."""
    health, conn = inspect_open(db_path.parent)
    if conn is None:
        if health.state is StoreState.EMPTY:
            raise UserError(
                f"{db_path}: the agent left no database (was it able to write to"
                f" {db_path.parent}?)",
                Exit.STORE_UNREADABLE,
            )
        raise UserError(health.message(), health.exit_code)
    try:
        return _stats(conn)
    finally:
        conn.close()


def _stats(source: Source) -> dict[str, Any]:
    events = Events(source)
    methods = events.count_by_capture_method()
    media = Media(source)
    frames = media.count_by_state()
    # Events whose event-level machine observation has this type.
    seen = Observations(source).event_type_counts()
    return {
        "events": events.count(),
        "events_activity": methods.get("activityDetection", 0),
        "events_timelapse": methods.get("timeLapse", 0),
        "media": media.count(),
        # Frames that reached the store durably; blank frames later reduced to a thumbnail
        # by policy ('evicted') were stored too.
        "stored": frames.get(MediaState.STORED, 0) + frames.get(MediaState.EVICTED, 0),
        "failed": frames.get(MediaState.FAILED, 0),
        "unsynced": media.unsynchronised_count(),
        # Queued, waiting items included (the agent stopped: nothing is in flight).
        "outbox_pending": Outbox(source).left()[0],
        "classified": events.count_by_state().get(EventState.CLASSIFIED, 0),
        "animals": seen.get("animal", 0),
        "blanks": seen.get("blank", 0),
        "humans": seen.get("human", 0),
        "vehicles": seen.get("vehicle", 0),
        "species": Observations(source).species_counts(),
        "evicted": frames.get(MediaState.EVICTED, 0),
    }


def render(result: SimulationResult) -> str:
    s = result.stats
    rows = [
        ("data dir", str(result.data_dir)),
        ("PIR edges sent / seen", f"{result.triggers_sent} / {result.triggers_seen}"),
        (
            "events",
            f"{s['events']} ({s['events_activity']} activity, {s['events_timelapse']} timelapse)",
        ),
        ("media", s["media"]),
        ("stored", s["stored"]),
        ("failed", s["failed"]),
        ("classified events", s["classified"]),
        ("animal / blank events", f"{s['animals']} / {s['blanks']}"),
        ("species (events)", ", ".join(f"{n} ({c})" for n, c in s["species"]) or "-"),
        ("blank frames reduced", s["evicted"]),
        ("unsynced-clock frames", s["unsynced"]),
        ("outbox pending", s["outbox_pending"]),
    ]
    if result.power:
        p = result.power
        rows.append(
            (
                "power profile",
                f"{p['profile']}: camera started {p['camera_starts']} times, on"
                f" {p['camera_on_s']:.1f} of {p['uptime_s']:.1f} s;"
                f" {p['outside_window']} PIR edges outside the capture windows",
            )
        )
    width = max(len(k) for k, _ in rows)
    table = "\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows)
    return f"camtrap simulation summary\n{table}\n{result.line()}"


def as_json(result: SimulationResult) -> str:
    return json.dumps(
        {
            "data_dir": str(result.data_dir),
            "triggers_sent": result.triggers_sent,
            "triggers_seen": result.triggers_seen,
            **result.stats,
            "scenes": result.scenes,
            "power": result.power,
            "line": result.line(),
        }
    )
