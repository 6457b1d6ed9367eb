"""The heartbeat reports what it can read, and goes out over the real link to ingest."""

from __future__ import annotations

import json

import pytest

from device.clock import ClockProbe
from device.store.outbox import Outbox
from device.telemetry import Heartbeat, cpu_temp_c
from tests.support.trap_db import open_store, queue_captures
from tests.support.uplink import collect_until, device_link, query, running_ingest
from tests.support.world import trap_settings

pytest_plugins = ["tests.support.broker"]
pytestmark = pytest.mark.timeout(60)


def fake_sys(tmp_path):  # type: ignore[no-untyped-def]
    thermal = tmp_path / "thermal"
    for zone, milli in (("thermal_zone0", "48312"), ("thermal_zone1", "51000")):
        (thermal / zone).mkdir(parents=True)
        (thermal / zone / "temp").write_text(milli + "\n")
    uptime = tmp_path / "uptime"
    uptime.write_text("12345.67 2000.00\n")
    return thermal, uptime


def test_cpu_temperature_is_the_hottest_zone_and_absent_without_zones(tmp_path):
    thermal, _ = fake_sys(tmp_path)
    assert cpu_temp_c(thermal) == 51.0
    assert cpu_temp_c(tmp_path / "nothing") is None


def test_a_heartbeat_carries_queue_disk_clock_and_model_and_reaches_ingest(broker, tmp_path):
    settings = trap_settings(tmp_path / "trap")
    store = open_store(settings)
    queue_captures(store, 2, frames=2)
    Outbox(store.db).complete(
        [f"meta:{e}" for (e,) in store.db.conn.execute("SELECT event_id FROM events LIMIT 1")]
    )
    thermal, uptime = fake_sys(tmp_path)
    beat = Heartbeat(
        "test-trap",
        lambda: store.db,
        store.data_dir,
        ClockProbe(settings.clock),
        interval_s=3600,
        thermal_dir=thermal,
        uptime_file=uptime,
        model_version=lambda: "test-model@1",
        disk_full=lambda: False,
    )
    msg = beat.collect()
    assert msg.queue_depth == {"metadata": 1, "media": 4}
    assert msg.free_disk_bytes and msg.total_disk_bytes and msg.queue_bytes
    assert msg.oldest_unsent_age_s is not None and msg.cpu_temp_c == 51.0
    assert msg.uptime_s == 12345.67 and msg.model_version == "test-model@1"
    assert msg.clock_synced is False and msg.disk_full is False

    beat.report("disk_full", "error", "card is full")
    with running_ingest(broker, tmp_path / "cloud"):
        link = device_link(broker, "test-trap")
        link.connect(timeout=10)
        try:
            beat.tick(link)
            beat.tick(link)  # within the interval: no second heartbeat
            collect_until(link, lambda ev: len(ev) >= 2)
        finally:
            link.close()
    rows = query(tmp_path / "cloud", "SELECT payload FROM telemetry")
    assert len(rows) == 1
    assert json.loads(rows[0][0])["cpu_temp_c"] == 51.0
    assert query(tmp_path / "cloud", "SELECT code FROM device_events") == [("disk_full",)]
    store.close()
