"""The import inside the running agent: ``camtrap import`` hands it over, cards are noticed as
they are mounted, and a stop mid-import resumes with no duplicates.

The agent owns the database while it runs, so an import on a running trap is done by its import
room, through the same store door and commit listeners as the trap's own captures: the agent's
vision worker classifies the imported events and its outbox queues them. Every world here is a
real agent (synthetic camera, uplink off) over a temp data dir; ``camtrap`` runs as a
subprocess with a config file of the same settings.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from device.agent import Agent
from device.config import Settings
from device.importer import engine
from device.importer.requests import REQUEST_DIR, pending_requests, write_request
from device.importer.room import MountedCard, MountWatcher
from device.runlock import RunLock
from device.store.db import open_readonly
from device.store.imports import IMPORTED_DIR, ImportRecord, Imports, NewImport
from device.store.store import DB_NAME
from device.store.vocabulary import ImportState
from tests.support.fatcard import build_card, fuse_available, mounted_card
from tests.support.trailcam import hyperfire_note, trailcam_jpeg
from tests.support.trap_db import open_store, write_config
from tests.support.world import trap_settings

FIRST_SHOT = datetime(2025, 7, 14, 5, 42, 17)
EVENTS, FRAMES = 3, 3  # a card of three HyperFire bursts "1 of 3" .. "3 of 3"
DEADLINE_S = 60.0
LABEL = "RECONYX"  # the card's volume label, and the name of the slot it is mounted at


def write_card(folder: Path, *, seed: int = 0) -> list[Path]:
    """EVENTS bursts of FRAMES photos, a second apart within a burst, ten minutes between."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for event in range(EVENTS):
        for frame in range(FRAMES):
            n = event * FRAMES + frame
            shot = FIRST_SHOT + timedelta(minutes=10 * event, seconds=frame)
            path = folder / f"IMG_{n + 1:04d}.JPG"
            path.write_bytes(
                trailcam_jpeg(
                    taken_at=shot,
                    maker_note=hyperfire_note(
                        taken_at=shot, sequence=(frame + 1, FRAMES), event_number=event + 1
                    ),
                    seed=seed + n,
                )
            )
            paths.append(path)
    return paths


def camtrap(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMTRAP_")}
    env["CAMTRAP_CONFIG"] = str(config)
    return subprocess.run(
        [sys.executable, "-m", "device.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE_S * 2,
    )


def query(settings: Settings, sql: str, *params: object) -> list[tuple[Any, ...]]:
    conn = open_readonly(settings.storage.data_dir / DB_NAME)
    try:
        return [tuple(r) for r in conn.execute(sql, params).fetchall()]
    finally:
        conn.close()


def imports(settings: Settings) -> list[ImportRecord]:
    conn = open_readonly(settings.storage.data_dir / DB_NAME)
    try:
        return list(reversed(Imports(conn).latest(100)))  # oldest first
    finally:
        conn.close()


def wait_for(predicate: Callable[[], bool], timeout: float = DEADLINE_S) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def no_traceback(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout, done.stderr


# -- camtrap import while the agent runs ----------------------------------------------------------


@dataclass
class Running:
    settings: Settings
    config: Path
    card: Path
    agent: Agent
    first: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """An agent with vision on (the default pack) and `camtrap import CARD --json` run once."""
    root = tmp_path_factory.mktemp("import-agent")
    settings = trap_settings(
        root,
        vision={"enabled": True, "tiles": False},
        **{"import": {"watch_interval_s": 0.1}},
    )
    config = write_config(settings, root / "camtrap.toml")
    card = root / "card"
    write_card(card / "DCIM" / "100RECNX")
    agent = Agent(settings)
    agent.start()
    try:
        first = camtrap(config, "import", str(card), "--json")
        yield Running(settings, config, card, agent, first)
    finally:
        agent.stop()


def test_camtrap_import_asks_the_running_agent_and_exits_0_with_its_summary(running):
    done = running.first
    no_traceback(done)
    assert done.returncode == 0, done.stderr
    assert f"the agent (pid {os.getpid()}) owns the database" in done.stderr
    report = json.loads(done.stdout)
    assert report["state"] == ImportState.DONE.value
    assert (report["imported"], report["events"], report["duplicates"]) == (
        EVENTS * FRAMES,
        EVENTS,
        0,
    )
    assert report["failures"] == []
    # The agent's room ran it, under the id the command watched, and took the request away.
    (record,) = [r for r in imports(running.settings) if r.import_id == report["import_id"]]
    assert record.source == str(running.card.resolve())
    assert running.agent.importer.imports_run >= 1
    assert not any((running.settings.storage.data_dir / REQUEST_DIR).glob("*.json"))


def test_the_agents_worker_classifies_the_imported_events_and_its_outbox_queues_them(running):
    settings = running.settings
    import_id = json.loads(running.first.stdout)["import_id"]

    def classified() -> bool:
        states = query(settings, "SELECT state FROM events WHERE import_id = ?", import_id)
        return len(states) == EVENTS and all(s == ("classified",) for s in states)

    assert wait_for(classified)
    events = {
        r[0] for r in query(settings, "SELECT event_id FROM events WHERE import_id = ?", import_id)
    }
    media = {
        r[0] for r in query(settings, "SELECT media_id FROM media WHERE import_id = ?", import_id)
    }
    assert len(media) == EVENTS * FRAMES
    observed = {r[0] for r in query(settings, "SELECT DISTINCT event_id FROM observations")}
    assert events <= observed
    outbox: dict[str, set[str]] = {}
    for kind, ref in query(settings, "SELECT kind, ref_id FROM outbox"):
        outbox.setdefault(kind, set()).add(ref)
    assert events <= outbox["metadata"]
    assert media <= outbox["media"]


def test_a_second_run_through_the_agent_adds_nothing(running):
    settings = running.settings
    media_before = query(settings, "SELECT COUNT(*) FROM media")
    done = camtrap(running.config, "import", str(running.card))
    no_traceback(done)
    assert done.returncode == 0, done.stderr
    assert f"0 photos imported in 0 events, {EVENTS * FRAMES} already held" in done.stdout
    assert query(settings, "SELECT COUNT(*) FROM media") == media_before
    last = imports(settings)[-1]
    assert (last.state, last.progress.duplicates, last.progress.imported) == (
        ImportState.DONE,
        EVENTS * FRAMES,
        0,
    )


def test_a_request_the_agent_refuses_prints_its_reason_in_one_line_and_exits_65(running):
    settings = running.settings
    before = len(imports(settings))
    done = camtrap(
        running.config, "import", str(running.card), "--reference", "NOPE.JPG=2025-07-14T06:00:00Z"
    )
    no_traceback(done)
    assert done.returncode == 65, done.stderr
    reason = [line for line in done.stderr.splitlines() if "NOPE.JPG" in line]
    assert len(reason) == 1 and "no such photo" in reason[0], done.stderr
    assert len(imports(settings)) == before  # refused before it began: no import row
    # The refusal was read and removed: nothing is left for the agent or the next command.
    assert not any((settings.storage.data_dir / REQUEST_DIR).iterdir())


def test_camtrap_import_watching_an_agent_that_dies_says_so_in_one_line_and_exits_74(tmp_path):
    """The agent's part is played here with its own doors (the run lock, the store), so it
    can die at a chosen moment: after it began the import, before it ended it."""
    settings = trap_settings(tmp_path)
    config = write_config(settings, tmp_path / "camtrap.toml")
    card = tmp_path / "card"
    write_card(card)
    data_dir = settings.storage.data_dir
    store = open_store(settings)
    lock = RunLock(data_dir)
    assert lock.acquire(blocking=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMTRAP_")}
    command = subprocess.Popen(
        [sys.executable, "-m", "device.cli", "import", str(card)],
        env={**env, "CAMTRAP_CONFIG": str(config)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for(lambda: bool(pending_requests(data_dir)))
        ((_, request),) = pending_requests(data_dir)
        assert request is not None and request.import_id is not None
        store.begin_import(
            NewImport(
                import_id=request.import_id,
                source=str(request.source),
                label=request.source.name,
                deployment_id=request.deployment_id,
                camera=None,
                clock_offset_s=0.0,
                clock_method=None,
                clock_reference=None,
                requested_by=request.requested_by,
                started_at="2026-01-01T00:00:00+00:00",
                files_total=EVENTS * FRAMES,
            )
        )
    finally:
        store.close()
        lock.release()  # the agent is gone, its import still "running"
    try:
        _, err = command.communicate(timeout=DEADLINE_S)
    finally:
        if command.poll() is None:  # it hung watching a dead agent: the test fails, not hangs
            command.kill()
            command.wait()
    assert "Traceback" not in err
    assert command.returncode == 74, err
    said = [line for line in err.splitlines() if "stopped before it finished" in line]
    assert len(said) == 1 and "run camtrap import again" in said[0], err
    assert not any((data_dir / REQUEST_DIR).glob("*.json"))  # no request left to run later


# -- an agent stopped mid-import, a request that fails --------------------------------------------


def stop_after(agent: Agent, photos: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ask the agent's import room to stop once ``photos`` photos have been read, exactly as
    ``Agent.stop`` does first (it then waits for the room): deterministic, with no timing."""
    real = engine.read_photo
    read = 0

    def reading(data: bytes) -> Any:
        nonlocal read
        facts = real(data)
        read += 1
        if read == photos:
            agent.importer.request_stop()
        return facts

    monkeypatch.setattr(engine, "read_photo", reading)


def ask_agent(settings: Settings, card: Path) -> ImportRecord:
    """What `camtrap import` does with an agent running: a request, then its row, watched."""
    request = engine.ImportRequest(card, settings.device.deployment_id, import_id=str(uuid.uuid4()))
    write_request(settings.storage.data_dir, request)

    def finished() -> ImportRecord | None:
        if not (settings.storage.data_dir / DB_NAME).exists():
            return None
        found = [r for r in imports(settings) if r.import_id == request.import_id]
        return found[0] if found and found[0].state is not ImportState.RUNNING else None

    assert wait_for(lambda: finished() is not None)
    record = finished()
    assert record is not None
    return record


def test_an_agent_stopped_mid_import_records_it_interrupted_and_the_next_run_imports_the_rest(
    tmp_path, monkeypatch
):
    settings = trap_settings(tmp_path, **{"import": {"watch_interval_s": 0.1}})
    card = tmp_path / "card"
    write_card(card)
    first_agent = Agent(settings)
    stop_after(first_agent, FRAMES + 2, monkeypatch)  # into the second burst
    first_agent.start()
    try:
        first = ask_agent(settings, card)
    finally:
        first_agent.stop()
    monkeypatch.undo()

    assert first.state is ImportState.INTERRUPTED
    assert "import again to resume" in (first.message or "")
    # The burst being read when it stopped may go on past the stop: held back, whole.
    assert (first.progress.imported, first.progress.events) == (FRAMES, 1)
    assert query(settings, "SELECT COUNT(*) FROM media") == [(FRAMES,)]

    second_agent = Agent(settings)
    second_agent.start()
    try:
        second = ask_agent(settings, card)
    finally:
        second_agent.stop()

    assert second.state is ImportState.DONE
    assert (second.progress.duplicates, second.progress.imported, second.progress.events) == (
        FRAMES,
        (EVENTS - 1) * FRAMES,
        EVENTS - 1,
    )
    shas = [r[0] for r in query(settings, "SELECT sha256 FROM media")]
    assert len(shas) == len(set(shas)) == EVENTS * FRAMES
    per_event = query(settings, "SELECT COUNT(*) FROM media GROUP BY event_id")
    assert sorted(n for (n,) in per_event) == [FRAMES] * EVENTS
    # Vision is off here: closed is ready to send.
    assert {state for (state,) in query(settings, "SELECT state FROM events")} == {"closed"}
    # No copy is left over from the held-back burst: one file per stored photo.
    stored = [p for p in (settings.storage.data_dir / IMPORTED_DIR).rglob("*") if p.is_file()]
    assert len(stored) == EVENTS * FRAMES


def test_a_request_the_room_cannot_run_is_dropped_once_and_the_next_one_runs(tmp_path):
    """A request naming an import that already began (as one left by an agent killed mid-run
    would) fails to begin; it must not be retried at every poll, blocking every later one."""
    settings = trap_settings(tmp_path, **{"import": {"watch_interval_s": 0.1}})
    card = tmp_path / "card"
    write_card(card)
    agent = Agent(settings)
    agent.start()
    try:
        done = ask_agent(settings, card)
        again = engine.ImportRequest(card, settings.device.deployment_id, import_id=done.import_id)
        write_request(settings.storage.data_dir, again)
        after = ask_agent(settings, card)
        assert agent.healthy()
    finally:
        agent.stop()
    assert after.state is ImportState.DONE
    assert after.progress.duplicates == EVENTS * FRAMES
    (kept,) = [r for r in imports(settings) if r.import_id == done.import_id]
    assert (kept.state, kept.progress) == (done.state, done.progress)  # left as it was
    assert not any((settings.storage.data_dir / REQUEST_DIR).iterdir())


# -- cards noticed as they are mounted ------------------------------------------------------------


class CountedLooks:
    """The agent's own card watcher, counting its looks at the mount table, so a test can wait
    until the agent has seen the slot empty (as it would while a technician changes cards)."""

    def __init__(self, watcher: MountWatcher) -> None:
        self.watcher = watcher
        self.looks = 0

    def poll(self) -> Sequence[MountedCard]:
        found = self.watcher.poll()
        self.looks += 1
        return found

    def wait(self, timeout: float) -> bool:
        return self.watcher.wait(timeout)


def card_imports(settings: Settings) -> list[ImportRecord]:
    if not (settings.storage.data_dir / DB_NAME).exists():
        return []
    return [r for r in imports(settings) if r.requested_by == "card"]


def finished_card_imports(settings: Settings, count: int) -> Callable[[], bool]:
    def done() -> bool:
        found = card_imports(settings)
        return len(found) >= count and all(r.state is not ImportState.RUNNING for r in found)

    return done


def failures(settings: Settings, import_id: str) -> list[tuple[str, str]]:
    return query(
        settings, "SELECT source_path, kind FROM import_failures WHERE import_id = ?", import_id
    )


def fat_card(tmp_path: Path, photos: list[Path], name: str = "card.img") -> Path:
    why = fuse_available("fat32")
    if why is not None:
        pytest.skip(why)
    files = {f"DCIM/100RECNX/{p.name}": p.read_bytes() for p in photos}
    return build_card(tmp_path / name, files, fs="fat32", label=LABEL)


def test_a_card_mounted_under_the_watch_root_is_imported_and_a_reinsert_adds_nothing(tmp_path):
    photos = write_card(tmp_path / "photos")
    image = fat_card(tmp_path, photos)
    image_before = hashlib.sha256(image.read_bytes()).hexdigest()
    cards = tmp_path / "cards"
    cards.mkdir()
    slot = cards / LABEL
    settings = trap_settings(
        tmp_path, **{"import": {"watch": True, "watch_roots": [cards], "watch_interval_s": 0.1}}
    )
    agent = Agent(settings)
    assert agent.importer.cards is not None
    looks = CountedLooks(agent.importer.cards)
    agent.importer.cards = looks
    agent.start()
    try:
        with mounted_card(image, slot) as card:
            assert wait_for(finished_card_imports(settings, 1))
            card.pull()  # the technician takes the card out
        seen = looks.looks
        assert wait_for(lambda: looks.looks >= seen + 2)  # the agent has seen the slot empty
        (first,) = card_imports(settings)
        with mounted_card(image, slot):  # and puts it back
            assert wait_for(finished_card_imports(settings, 2))
        second = card_imports(settings)[-1]
    finally:
        agent.stop()

    assert first.state is ImportState.DONE, first.message
    assert first.source == str(slot)
    assert first.deployment_id == settings.device.deployment_id  # the trap's own
    assert (first.progress.imported, first.progress.events) == (EVENTS * FRAMES, EVENTS)
    # fusefat shows the volume label as an empty file at the card's root
    # (tests/support/fatcard.py); it is the only file not imported.
    assert {path for path, _ in failures(settings, first.import_id)} <= {LABEL}
    stored = dict(
        query(settings, "SELECT file_name, sha256 FROM media WHERE import_id = ?", first.import_id)
    )
    assert stored == {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in photos}

    assert second.import_id != first.import_id
    assert second.state is ImportState.DONE, second.message
    assert (second.progress.imported, second.progress.duplicates) == (0, EVENTS * FRAMES)
    assert query(settings, "SELECT COUNT(*) FROM media") == [(EVENTS * FRAMES,)]
    assert hashlib.sha256(image.read_bytes()).hexdigest() == image_before  # never written
