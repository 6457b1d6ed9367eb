"""Faults the agent must survive without losing a committed capture."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from device.agent import Agent
from device.power.state_file import discard_partial
from device.store import files
from device.store.store import DB_NAME, MediaStore
from tests.support.world import trap_settings


@contextlib.contextmanager
def read_only(directory: Path):
    """Make ``directory`` unwritable, even for root (a read-only bind mount)."""
    if os.geteuid() != 0:
        directory.chmod(0o555)
        try:
            yield
        finally:
            directory.chmod(0o755)
        return
    subprocess.run(["mount", "--bind", str(directory), str(directory)], check=True)
    try:
        remount = subprocess.run(
            ["mount", "-o", "remount,bind,ro", str(directory)], capture_output=True, text=True
        )
        if remount.returncode != 0:
            pytest.skip(f"cannot make a read-only bind mount here: {remount.stderr.strip()}")
        yield
    finally:
        subprocess.run(["umount", str(directory)], check=True)


def burst(agent: Agent) -> None:
    agent.capture.trigger("pir")
    assert agent.capture.wait_idle(10)
    time.sleep(agent.settings.capture.cooldown_s + 0.02)


def media_states(data_dir: Path) -> dict[str, int]:
    conn = sqlite3.connect(data_dir / DB_NAME)
    try:
        return dict(conn.execute("SELECT state, COUNT(*) FROM media GROUP BY state").fetchall())
    finally:
        conn.close()


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_a_read_only_data_dir_is_logged_spooled_and_recovered(tmp_path, mock_pins, caplog):
    settings = trap_settings(tmp_path)
    data_dir = settings.storage.data_dir
    agent = Agent(settings)
    agent.start()
    try:
        burst(agent)
        with read_only(data_dir):
            burst(agent)
            assert wait_for(lambda: agent.store.mode == "fallback")
            assert wait_for(lambda: agent.writer.queue.empty())
            assert agent.store.spool_count() >= 3
        assert wait_for(lambda: agent.store.mode == "primary")
        burst(agent)
    finally:
        agent.stop()
    assert any("storage fallback" in r.getMessage() for r in caplog.records)
    assert media_states(data_dir) == {"stored": 9}
    assert agent.store.spool_count() == 0


def test_a_vanished_data_dir_is_not_recreated_and_recovers(tmp_path, mock_pins):
    settings = trap_settings(tmp_path)
    data_dir = settings.storage.data_dir
    agent = Agent(settings)
    agent.start()
    try:
        burst(agent)
        data_dir.rename(tmp_path / "card-out")
        burst(agent)
        assert wait_for(lambda: agent.store.mode == "fallback")
        assert not data_dir.exists()
        burst(agent)
        (tmp_path / "card-out").rename(data_dir)
        assert wait_for(lambda: agent.store.mode == "primary")
    finally:
        agent.stop()
    assert media_states(data_dir) == {"stored": 9}


def test_an_agent_started_without_its_data_dir_captures_into_fallback(tmp_path, mock_pins):
    settings = trap_settings(tmp_path)
    settings.storage.data_dir.rmdir()
    agent = Agent(settings)
    agent.start()
    try:
        assert agent.store.mode == "fallback"
        burst(agent)
        settings.storage.data_dir.mkdir()
        assert wait_for(lambda: agent.store.mode == "primary")
    finally:
        agent.stop()
    assert media_states(settings.storage.data_dir) == {"stored": 3}


def test_corrupt_camera_frames_are_recorded_as_failed_media(tmp_path, mock_pins):
    from tests.support.world import jpeg_bytes

    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "a-empty.jpg").write_bytes(b"")
    (frames / "b-truncated.jpg").write_bytes(jpeg_bytes()[:700])
    (frames / "c-garbage.jpg").write_bytes(os.urandom(2000))
    (frames / "d-good.jpg").write_bytes(jpeg_bytes())
    settings = trap_settings(
        tmp_path,
        camera={"backend": "replay", "replay_dir": frames},
        capture={"burst_frames": 4, "max_burst_frames": 4},
    )
    agent = Agent(settings)
    agent.start()
    try:
        burst(agent)
    finally:
        agent.stop()
    assert media_states(settings.storage.data_dir) == {"failed": 3, "stored": 1}


# -- SIGKILL at random moments -------------------------------------------------------------------

KILL_RUNS = 50


def sim_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMTRAP_")}
    env.update(
        {
            "CAMTRAP_CONFIG": str(tmp / "camtrap.toml"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    (tmp / "camtrap.toml").write_text(
        "[camera]\nmain_size = [640, 480]\nlores_size = [80, 60]\n"
        "[pir]\nsample_rate = 100.0\n"
        '[uplink]\ntransport = "none"\n'  # own world: no link to whatever listens on 8883
        f'[clock]\nkernel_status = false\ntimesync_flag = "{tmp}/none"\n'
        f'rtc_device = "{tmp}/none"\n'
    )
    return env


@pytest.mark.slow
def test_sigkill_during_bursts_loses_no_committed_capture(tmp_path):
    rng = random.Random(1234)
    data_dir = tmp_path / "data"
    env = sim_env(tmp_path)
    committed: set[str] = set()
    for run in range(KILL_RUNS):
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "device.cli",
                "simulate",
                "--triggers",
                "1000",
                "--verbose",
                "--data-dir",
                str(data_dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert proc.stderr is not None
        kill_after = rng.uniform(0.05, 1.2)
        started = None
        lines: list[str] = []
        os.set_blocking(proc.stderr.fileno(), False)
        while proc.poll() is None:
            chunk = proc.stderr.readline()
            if chunk:
                lines.append(chunk)
                if started is None and '"agent started"' in chunk:
                    started = time.monotonic()
            elif started is not None and time.monotonic() - started >= kill_after:
                break
            else:
                time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        rest = proc.stderr.read() or ""
        lines.extend(rest.splitlines())
        committed |= {
            line.split('"media_id": "')[1].split('"')[0]
            for line in lines
            if '"stored media"' in line
        }
        check_after_crash(data_dir, committed, run)
    assert len(committed) > KILL_RUNS, "the runs should have committed captures to check"


def check_after_crash(data_dir: Path, committed: set[str], run: int) -> None:
    # Before anything repairs it: no final-named JPEG is half-written.
    for path in (data_dir / files.MEDIA_DIR).rglob("*.jpg"):
        assert files.jpeg_problem(path.read_bytes()) is None, f"run {run}: torn file {path}"
    conn = sqlite3.connect(data_dir / DB_NAME)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    settings = trap_settings(data_dir.parent)
    store = MediaStore(settings)
    store.open()  # reconcile, as the next start would
    try:
        with store.db.read() as conn:
            rows = {
                r["media_id"]: r
                for r in conn.execute("SELECT media_id, path, sha256, state FROM media")
            }
    finally:
        store.close()
    # The next start's other clean-up: the power state a kill cut short (EnergyLedger).
    discard_partial(data_dir)
    missing = committed - rows.keys()
    assert not missing, f"run {run}: committed captures lost: {sorted(missing)[:3]}"
    for media_id in committed:
        row = rows[media_id]
        # 'evicted': a blank frame reduced to its thumbnail by the blank-media policy.
        assert row["state"] in ("stored", "evicted"), f"run {run}: {media_id} is {row['state']}"
        if row["state"] == "stored":
            assert files.sha256_file(data_dir / row["path"]) == row["sha256"]
    assert not list(data_dir.rglob("*.part")), f"run {run}: .part files survived reconcile"


def test_sigterm_stops_the_service_cleanly_after_committing_what_it_captured(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    config = tmp_path / "camtrap.toml"
    config.write_text(
        f'[storage]\ndata_dir = "{data_dir}"\nfallback_dir = "{tmp_path}/fb"\n'
        '[pir]\npin_factory = "mock"\n'
        '[camera]\nbackend = "synthetic"\nmain_size = [320, 240]\nlores_size = [80, 60]\n'
        "[capture]\ntimelapse_interval_s = 0.2\n"
        "[vision]\nenabled = false\n"
        '[uplink]\ntransport = "none"\n'
        f'[clock]\nkernel_status = false\ntimesync_flag = "{tmp_path}/none"\n'
        f'rtc_device = "{tmp_path}/none"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMTRAP_")}
    env.update(CAMTRAP_CONFIG=str(config), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "device.cli", "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    stored = 0
    deadline = time.monotonic() + 60
    while stored < 3 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if '"stored media"' in line:
            stored += 1
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    logged = stored + out.count('"stored media"')
    assert '"agent stopped"' in out, "the service logs its stop to stdout (journald)"
    conn = sqlite3.connect(data_dir / DB_NAME)
    try:
        assert conn.execute("SELECT COUNT(*) FROM media WHERE state='stored'").fetchone()[0] == (
            logged
        )
        assert conn.execute("SELECT COUNT(*) FROM events WHERE state='open'").fetchone()[0] == 0
    finally:
        conn.close()
