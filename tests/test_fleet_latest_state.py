"""After the agent drains its outbox, the cloud's fleet view shows the state after the sync.

The heartbeat used to go out only on the first tick online (queue still full) and then once
per ``telemetry.interval_s``, so the fleet page and the report kept showing the full queue and
no last sync. The agent now sends one as soon as a sync drained the outbox (or the model
changed). Real agent, real mosquitto, real ingest.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from cloud_stub.export.source import open_readonly
from cloud_stub.review import fleet
from tests.support.trap_db import mqtt_trap_settings, open_store, queue_captures, write_config
from tests.support.uplink import query, running_ingest, wait_until

pytest_plugins = ["tests.support.broker"]
pytestmark = pytest.mark.timeout(90)


def fleet_row(root):  # type: ignore[no-untyped-def]
    db = open_readonly(root)
    try:
        rows, _ = fleet.fleet(db, root)
    finally:
        db.close()
    return rows[0] if rows else None


def test_after_a_drain_the_fleet_shows_queue_zero_and_the_last_sync(broker, tmp_path):
    settings = mqtt_trap_settings(tmp_path / "trap", broker)
    settings.telemetry.interval_s = 3600  # only the first heartbeat and the post-sync one
    store = open_store(settings)
    queue_captures(store, 4, frames=1)
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
            assert wait_until(lambda: query(cloud, "SELECT count(file_path) FROM media") == [(4,)])

            def settled() -> bool:
                row = fleet_row(cloud)
                return row is not None and row.queue_depth == 0 and row.last_sync is not None

            assert wait_until(settled, timeout=20), fleet_row(cloud)
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(20)
    row = fleet_row(cloud)
    assert row.queue_depth == 0 and row.last_sync
    # The first heartbeat (full queue) came before; the latest one is after the drain.
    beats = query(cloud, "SELECT count(*) FROM telemetry")[0][0]
    assert beats >= 2
