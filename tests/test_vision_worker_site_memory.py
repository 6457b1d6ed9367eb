"""The agent's site memory: fed by the vision worker, lent to the engine it serves, saved and
loaded with the agent, started over on relocation, and reset by the remote command."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from io import BytesIO

import numpy as np
import pytest

from device.agent import Agent
from device.capture.types import TIMELAPSE, CapturedFrame, EventClosed
from device.clock import ClockState
from device.config import Settings
from device.contracts.protocol import Command, encode
from device.hardware.camera import Frame
from device.ota.engine_guard import EngineGuard
from device.ota.remote_commands import KNOWN, CommandHandler
from device.ota.state import StateFile
from device.vision.engine import VisionEngine
from device.vision.site_memory import FILE_NAME, FrameEmbedding, SiteMemory, project, site_of
from device.vision.worker import ClassificationWorker
from tests.support.trap_db import open_store, queue_captures
from tests.support.world import trap_settings
from tests.test_vision_novelty import embedding_pack, picture

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def settings_for(tmp_path, deployment: str = "dep-1") -> Settings:
    settings = trap_settings(
        tmp_path,
        vision={"enabled": True, "animal_threshold": 1.0, "tiles": False, "site_memory_size": 50},
    )
    settings.device.deployment_id = deployment
    return settings


def timelapse_events(store, n: int, start: int = 0) -> list[str]:
    """``n`` committed single-frame timelapse captures of the (smooth) empty scene."""
    ids = []
    for k in range(start, start + n):
        event_id, media_id = str(uuid.uuid4()), str(uuid.uuid4())
        out = BytesIO()
        picture(k, size=(160, 120)).save(out, "JPEG", quality=90)
        frame = CapturedFrame(
            event_id=event_id,
            media_id=media_id,
            seq=0,
            captured_at=T0 + timedelta(hours=k),
            captured_mono=time.monotonic(),
            trigger_mono=None,
            capture_method=TIMELAPSE,
            trigger_source="timelapse",
            clock=ClockState("rtc", True),
            ir_on=False,
            frame=Frame(jpeg=out.getvalue(), lores=None, width=160, height=120),
        )
        store.commit([frame, EventClosed(event_id, T0 + timedelta(hours=k), 1, TIMELAPSE)])
        ids.append(event_id)
    return ids


def run_worker(settings, store, engine, memory, events) -> ClassificationWorker:
    worker = ClassificationWorker(settings, store, engine, site_memory=memory)
    worker.start()
    try:
        for event_id in events:
            worker.submit(event_id)
        assert worker.wait_idle(60)
    finally:
        worker.stop(10)
    return worker


def memory_for(settings: Settings) -> SiteMemory:
    return SiteMemory(
        settings.vision.site_memory_size,
        site_of(settings),
        settings.storage.data_dir / FILE_NAME,
    )


@pytest.fixture
def engine(tmp_path) -> VisionEngine:
    return VisionEngine.load(
        embedding_pack(tmp_path / "pack"),
        settings_for(tmp_path).vision,
        settings_for(tmp_path).location,
    )


def test_the_worker_feeds_timelapse_frames_and_saves_the_memory_when_it_stops(tmp_path, engine):
    settings = settings_for(tmp_path)
    store = open_store(settings)
    memory = memory_for(settings)
    run_worker(settings, store, engine, memory, timelapse_events(store, 6))
    assert len(memory) == 6 and engine.site_memory is memory  # lent to the engine it serves
    path = settings.storage.data_dir / FILE_NAME
    assert path.exists() and not memory.dirty
    # A restart: the new worker loads what the old one learnt, and goes on.
    again = memory_for(settings)
    run_worker(settings, store, engine, again, timelapse_events(store, 2, start=6))
    assert len(again) == 8


def test_an_event_with_an_animal_teaches_the_memory_nothing(tmp_path, engine):
    settings = settings_for(tmp_path)
    store = open_store(settings)
    memory = memory_for(settings)
    bursts = queue_captures(store, 2, frames=2)  # activity captures of random pixels
    run_worker(settings, store, engine, memory, [b.event_id for b in bursts])
    assert len(memory) == 0  # not blank with confidence (the noisy-OR keeps them)


def test_through_the_ota_guard_the_memory_reaches_the_engine_serving_now(tmp_path, engine):
    settings = settings_for(tmp_path)
    store = open_store(settings)
    memory = memory_for(settings)
    guard = EngineGuard(engine)
    run_worker(settings, store, guard, memory, timelapse_events(store, 3))
    assert engine.site_memory is memory and len(memory) == 3


def test_a_relocated_trap_starts_its_memory_over(tmp_path, engine):
    here = settings_for(tmp_path, "dep-1")
    store = open_store(here)
    memory = memory_for(here)
    run_worker(here, store, engine, memory, timelapse_events(store, 4))
    assert len(memory) == 4
    moved = settings_for(tmp_path, "dep-2")  # camtrap-provision gave it a new deployment
    after = memory_for(moved)
    after.load()
    assert len(after) == 0
    # and a location change of a running trap does the same at its next event
    running = memory_for(here)
    running.load()
    assert len(running) == 0  # the file now belongs to dep-2
    run_worker(here, store, engine, running, timelapse_events(store, 2, start=10))
    here.location.latitude = -2.33
    run_worker(here, store, engine, running, timelapse_events(store, 1, start=20))
    assert len(running) == 1


def test_turning_site_memory_off_takes_novelty_away_from_the_engine(tmp_path, engine):
    settings = settings_for(tmp_path)
    settings.vision.site_memory = False
    store = open_store(settings)
    memory = memory_for(settings)
    run_worker(settings, store, engine, memory, timelapse_events(store, 2))
    assert engine.site_memory is None and len(memory) == 0


class Reports:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []

    def __call__(self, code, severity, details) -> None:  # type: ignore[no-untyped-def]
        self.sent.append((code, details))


def test_the_reset_site_memory_command_reaches_the_agents_memory(tmp_path):
    assert "reset-site-memory" in KNOWN
    settings = settings_for(tmp_path)
    agent = Agent(settings)
    try:
        rng = np.random.default_rng(0)
        for i in range(5):
            agent.site_memory.remember(
                FrameEmbedding("m@1:8", "full|0x0|1", project(rng.normal(size=(1, 8)))), f"e{i}"
            )
        agent.site_memory.save()
        reports = Reports()
        handler = CommandHandler(
            settings.device.id,
            agent.command_callbacks(),
            StateFile(tmp_path / "ota-state.json"),
            reports,
        )
        command = Command(
            device_id=settings.device.id,
            command_id="reset-1",
            name="reset-site-memory",
            issued_at=T0,
        )
        assert handler.handle(encode(command)) == "command.done"
        assert reports.sent[-1][1]["result"] == "forgot 5 frames"
        assert len(agent.site_memory) == 0
        reloaded = memory_for(settings)
        reloaded.load()
        assert len(reloaded) == 0  # saved at once: a restart does not bring the scene back
        assert handler.handle(encode(command)) == "duplicate"
    finally:
        agent.camera.close()


def test_an_engine_the_guard_swaps_in_later_judges_against_the_same_memory(tmp_path, engine):
    """A model update (or a rollback) between two events must not leave an event without
    the deployment's memory: the guard hands it to every engine it serves."""
    settings = settings_for(tmp_path)
    memory = memory_for(settings)
    guard = EngineGuard(engine)
    guard.use_site_memory(memory)
    newer = VisionEngine.load(engine.pack.path, settings.vision, settings.location)
    assert newer.site_memory is not memory
    guard.swap(newer, trial=1)
    assert newer.site_memory is memory
    rebuilt = VisionEngine.load(engine.pack.path, settings.vision, settings.location)
    guard.replace(rebuilt)
    assert rebuilt.site_memory is memory
    guard.use_site_memory(None)  # site memory turned off: the fallback loses it too
    assert rebuilt.site_memory is None and engine.site_memory is None
