"""``camtrap sync``: drains now and tells what is left; never a second writer beside an agent."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from device.runlock import RunLock
from device.uplink.service import CLOSED_POLL_S
from tests.support.broker import free_port
from tests.support.trap_db import mqtt_trap_settings, open_store, queue_captures, write_config
from tests.support.uplink import query, running_ingest, wait_until

pytest_plugins = ["tests.support.broker"]
pytestmark = pytest.mark.timeout(90)


def sync(config, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run(
        [sys.executable, "-m", "device.cli", "--config", str(config), "sync", "--plain", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_sync_drains_everything_and_exits_zero(broker, tmp_path):
    settings = mqtt_trap_settings(tmp_path / "trap", broker)
    store = open_store(settings)
    queue_captures(store, 5, frames=2)
    store.close()
    config = write_config(settings, tmp_path / "camtrap.toml")
    with running_ingest(broker, tmp_path / "cloud"):
        done = sync(config, "--timeout", "30")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "left 0 items" in done.stdout
    assert query(tmp_path / "cloud", "SELECT count(file_path) FROM media") == [(10,)]


def test_sync_without_a_reachable_cloud_says_what_is_left_and_fails(broker, tmp_path):
    settings = mqtt_trap_settings(tmp_path / "trap", broker, mqtt={"port": free_port()})
    store = open_store(settings)
    queue_captures(store, 2, frames=1)
    store.close()
    result = sync(write_config(settings, tmp_path / "camtrap.toml"), "--timeout", "3")
    assert result.returncode == 1
    assert "left 4 items" in result.stdout
    assert "metadata" in result.stdout and "media" in result.stdout


def test_sync_beside_a_running_agent_asks_it_instead_of_writing(broker, tmp_path):
    # The agent sits on a metered link: on its own it sends metadata only.
    settings = mqtt_trap_settings(tmp_path / "trap", broker, link_type="metered")
    store = open_store(settings)
    queue_captures(store, 3, frames=1)
    store.close()
    config = write_config(settings, tmp_path / "camtrap.toml")
    cloud = tmp_path / "cloud"
    with running_ingest(broker, cloud):
        agent = subprocess.Popen(
            [sys.executable, "-m", "device.cli", "--config", str(config), "run"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert wait_until(lambda: query(cloud, "SELECT count(*) FROM events") == [(3,)])
            time.sleep(0.5)
            assert query(cloud, "SELECT count(file_path) FROM media") == [(0,)]
            result = sync(config, "--all", "--timeout", "30")
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(20)
    assert "owns the database" in result.stderr
    assert result.returncode == 0, result.stdout + result.stderr
    assert query(cloud, "SELECT count(file_path) FROM media") == [(3,)]


def test_sync_wakes_an_agent_sleeping_outside_its_sync_windows(broker, tmp_path):
    # The only window opens in six hours and the closed agent looks for requests every
    # CLOSED_POLL_S (30 s): a sync that finishes within 20 s was woken by camtrap sync's signal.
    opens = (datetime.now(UTC) + timedelta(hours=6)).strftime("%H:%M")
    closes = (datetime.now(UTC) + timedelta(hours=6, minutes=30)).strftime("%H:%M")
    settings = mqtt_trap_settings(tmp_path / "trap", broker, sync_windows=[f"{opens}-{closes}"])
    assert CLOSED_POLL_S > 20
    store = open_store(settings)
    queue_captures(store, 2, frames=1)
    store.close()
    config = write_config(settings, tmp_path / "camtrap.toml")
    cloud = tmp_path / "cloud"
    with running_ingest(broker, cloud):
        agent = subprocess.Popen(
            [sys.executable, "-m", "device.cli", "--config", str(config), "run"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            lock = RunLock(settings.storage.data_dir)
            assert wait_until(lambda: lock.holder_pid() == agent.pid)
            time.sleep(1.0)  # the agent is up and waiting outside its window
            assert query(cloud, "SELECT count(*) FROM events") == [(0,)]
            result = sync(config, "--timeout", "20")
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(20)
    assert result.returncode == 0, result.stdout + result.stderr
    assert query(cloud, "SELECT count(*) FROM events") == [(2,)]


def test_sync_json_says_what_is_left_and_what_of_every_capture_reached_the_cloud(broker, tmp_path):
    import json

    settings = mqtt_trap_settings(tmp_path / "trap", broker)
    store = open_store(settings)
    bursts = queue_captures(store, 2, frames=2)
    store.close()
    config = write_config(settings, tmp_path / "camtrap.toml")
    with running_ingest(broker, tmp_path / "cloud"):
        done = sync(config, "--json", "--timeout", "30")
    assert done.returncode == 0, done.stdout + done.stderr
    (line,) = done.stdout.strip().splitlines()  # stdout is the JSON object alone
    report = json.loads(line)
    assert report["left"] == {"items": 0, "bytes": 0} and report["exit_code"] == 0
    assert report["sent"]["items"] == 6 and report["undeliverable"] == 0
    events = {e["event_id"]: e["metadata_uploaded"] for e in report["captures"]["events"]}
    assert events == {b.event_id: True for b in bursts}
    media = {m["media_id"]: m for m in report["captures"]["media"]}
    assert set(media) == {m for b in bursts for m in b.media_ids}
    stored = dict(query(tmp_path / "cloud", "SELECT media_id, sha256 FROM media"))
    for media_id, frame in media.items():
        assert frame["uploaded"] and frame["upload_queued"] and frame["state"] == "stored"
        assert frame["sha256"] == stored[media_id]
