"""The agent (``camtrap run``, a real subprocess) killed with SIGKILL at random points of a
drain, again and again: nothing is lost, and ingest stores every item exactly once.

Between runs the test queues more captures through the real store (while no agent runs, so
there is only ever one writer). A kill counts as mid-drain when items were still pending or
in flight right after it; the test needs at least 30 of those.
"""

from __future__ import annotations

import hashlib
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from device.store.store import DB_NAME
from tests.support.trap_db import mqtt_trap_settings, open_store, queue_captures, write_config
from tests.support.uplink import query, running_ingest, wait_until

pytest_plugins = ["tests.support.broker"]
pytestmark = pytest.mark.timeout(240)

DEVICE = "crash-trap"
MID_DRAIN_KILLS = 30
MAX_RUNS = 60
CAPTURES_PER_RUN, FRAMES = 4, 2


def device_rows(data_dir: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(f"file:{data_dir / DB_NAME}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def unsent(data_dir: Path) -> int:
    return device_rows(
        data_dir, "SELECT count(*) FROM outbox WHERE state IN ('pending', 'inflight')"
    )[0][0]


def done(data_dir: Path) -> int:
    return device_rows(data_dir, "SELECT count(*) FROM outbox WHERE state='done'")[0][0]


def start_agent(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "device.cli", "--config", str(config), "run"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_sigkill_at_random_points_of_a_drain_loses_nothing_and_stores_each_once(broker, tmp_path):
    root = tmp_path / "trap"
    settings = mqtt_trap_settings(
        root,
        broker,
        DEVICE,
        max_payload_bytes=4096,  # many chunks per frame: kills land mid-file
        window_items=8,
        ack_timeout_s=5,
    )
    config = write_config(settings, tmp_path / "camtrap.toml")
    rng = random.Random(4)
    cloud = tmp_path / "cloud"
    mid_drain = runs = 0
    with running_ingest(broker, cloud):
        while mid_drain < MID_DRAIN_KILLS and runs < MAX_RUNS:
            runs += 1
            store = open_store(settings)
            # Enough to drain that a kill 0-0.25 s after the first item is mostly mid-drain:
            # ingest acks a chunk per row insert, with no file to sync until a file is whole.
            queue_captures(store, CAPTURES_PER_RUN, frames=FRAMES, size=(480, 360), seed=runs)
            store.close()
            before = done(root / "data")
            agent = start_agent(config)
            try:
                # Kill somewhere between "the drain has just begun" and "well into it".
                wait_until(lambda b=before: done(root / "data") > b, timeout=20)
                time.sleep(rng.uniform(0.0, 0.25))
            finally:
                agent.send_signal(signal.SIGKILL)
                agent.wait(10)
            if unsent(root / "data"):
                mid_drain += 1
        agent = start_agent(config)  # a last, undisturbed run finishes the job
        try:
            assert wait_until(lambda: unsent(root / "data") == 0, timeout=90)
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(20)

    assert mid_drain >= MID_DRAIN_KILLS, f"only {mid_drain} of {runs} kills landed mid-drain"
    data_dir = root / "data"
    assert {s for (s,) in device_rows(data_dir, "SELECT state FROM outbox")} == {"done"}
    device_media = dict(device_rows(data_dir, "SELECT media_id, sha256 FROM media"))
    stored = query(cloud, "SELECT media_id, file_path, sha256 FROM media")
    assert len(stored) == len(device_media) == CAPTURES_PER_RUN * FRAMES * runs
    for media_id, path, sha in stored:
        blob = (cloud / "media" / path).read_bytes()
        assert hashlib.sha256(blob).hexdigest() == sha == device_media[media_id]
    events = device_rows(data_dir, "SELECT event_id FROM events")
    assert sorted(query(cloud, "SELECT event_id FROM events")) == sorted(events)
    # Each item stored once: one row per id, one file per media, whatever was resent.
    files_at_ingest = [p for p in (cloud / "media").rglob("*") if p.is_file()]
    assert len(files_at_ingest) == len(device_media)
    assert query(cloud, "SELECT count(*) - count(DISTINCT item_id) FROM received") == [(0,)]
    counters = dict(query(cloud, "SELECT name, sum(value) FROM counter_shards GROUP BY name"))
    print(f"runs={runs} mid_drain_kills={mid_drain} ingest counters={counters}")
    assert query(cloud, "SELECT count(*) FROM partial_chunks") == [(0,)]
