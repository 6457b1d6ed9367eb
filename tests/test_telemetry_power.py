"""Telemetry v3 carries the power figures: profile, battery, shedding and the energy counters.
Older versions refuse them; a heartbeat without a power report stays what it was."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from device.clock import ClockProbe
from device.contracts import protocol
from device.contracts.protocol import SHED_STEPS, ProtocolError, Telemetry
from device.power import report as power_report
from device.power.counters import EnergyCounters, EnergySnapshot
from device.power.report import BatteryReading, PowerReport
from device.telemetry import Heartbeat, power_fields
from tests.support.clock import ManualClock
from tests.support.trap_db import open_store
from tests.support.uplink import collect_until, device_link, query, running_ingest
from tests.support.world import trap_settings

pytest_plugins = ["tests.support.broker"]
pytestmark = pytest.mark.timeout(60)

SINCE = 1_780_000_000.0


def a_report(**changes: object) -> PowerReport:
    clock = ManualClock(start=0.0)
    counters = EnergyCounters(clock=clock.monotonic, wall=lambda: SINCE)
    counters.camera(True)
    clock.advance(600)
    counters.camera(False)
    counters.add_captures(6)
    clock.advance(6600)
    fields: dict[str, object] = {
        "profile": "low-power",
        "board": "zero2w",
        "counters": counters.snapshot({"vision": 12.5, "capture": 3.0, "other": 0.5}),
        "battery": BatteryReading(percent=47.5, voltage_v=3.81, source="sysfs BAT0"),
        "shed_level": 1,
        "radio_on": False,
        "days_left": 3.2,
    }
    fields.update(changes)
    return PowerReport(**fields)  # type: ignore[arg-type]


def heartbeat(settings, store, **kwargs):  # type: ignore[no-untyped-def]
    thermal = store.data_dir / "no-thermal"
    return Heartbeat(
        "test-trap",
        lambda: store.db,
        store.data_dir,
        ClockProbe(settings.clock),
        interval_s=3600,
        thermal_dir=thermal,
        uptime_file=thermal / "uptime",
        **kwargs,
    )


def test_the_contracts_shedding_steps_are_the_agents():
    assert SHED_STEPS == power_report.SHED_STEPS


def test_a_heartbeat_with_a_power_report_is_v3_and_carries_every_figure(tmp_path):
    settings = trap_settings(tmp_path / "trap")
    store = open_store(settings)
    try:
        beat = heartbeat(settings, store, power=a_report, battery_wh=100.0)
        msg = beat.collect()
    finally:
        store.close()
    assert msg.v == 3
    assert msg.power_profile == "low-power" and msg.board == "zero2w"
    assert msg.battery_pct == 47.5 and msg.battery_v == 3.81 and msg.battery_wh == 100.0
    assert msg.shed_level == 1 and msg.shed_steps == ("blank_media",)
    assert msg.radio_on is False
    assert msg.counters_since == datetime.fromtimestamp(SINCE, UTC)
    assert msg.counted_s == pytest.approx(7200)
    assert msg.camera_on_s == pytest.approx(600) and msg.radio_on_s == pytest.approx(7200)
    assert msg.captures == 6
    assert msg.cpu_s == {"vision": 12.5, "capture": 3.0, "other": 0.5}
    assert msg.days_left == 3.2
    wire = json.loads(protocol.encode(msg))
    assert wire["v"] == 3 and wire["batteryPct"] == 47.5 and wire["cpuS"]["vision"] == 12.5
    assert wire["countedS"] == pytest.approx(7200) and wire["shedLevel"] == 1
    assert protocol.decode(protocol.encode(msg)) == msg


def test_without_a_power_report_the_heartbeat_keeps_its_old_version(tmp_path):
    settings = trap_settings(tmp_path / "trap")
    store = open_store(settings)
    try:
        msg = heartbeat(settings, store).collect()
    finally:
        store.close()
    assert msg.v == 2  # the store answers the deferred-blank figures: v2, as before
    assert msg.power_profile is None and msg.cpu_s is None


def test_a_gauge_reading_past_full_is_clamped_and_a_board_left_on_auto_is_named(tmp_path):
    settings = trap_settings(tmp_path / "trap")
    store = open_store(settings)
    try:
        overfull = BatteryReading(percent=101.3, voltage_v=4.25)
        msg = heartbeat(
            settings, store, power=lambda: a_report(battery=overfull, board="auto")
        ).collect()
    finally:
        store.close()
    assert msg.battery_pct == 100.0
    assert msg.board in ("zero2w", "pi3", "pi4", "pi5")


def _wire(**fields: object) -> bytes:
    base: dict[str, object] = {
        "type": "telemetry",
        "deviceID": "trap-1",
        "itemID": "tel:1",
        "sentAt": "2026-06-01T12:00:00Z",
    }
    return json.dumps({**base, **fields}).encode()


@pytest.mark.parametrize("version", [1, 2])
def test_older_versions_refuse_the_power_fields(version):
    with pytest.raises(ProtocolError) as err:
        protocol.decode(_wire(v=version, batteryPct=50.0, cpuS={"vision": 1.0}))
    assert err.value.reason == "invalid_fields"
    assert "batteryPct/cpuS need v=3" in err.value.detail


def test_v3_refuses_bad_power_values():
    for bad in (
        {"batteryPct": 140.0},
        {"shedLevel": 5},
        {"cpuS": {"Vision Room": 1.0}},
        {"cpuS": {"vision": -1.0}},
        {"powerProfile": "turbo"},
        {"countedS": -5},
    ):
        with pytest.raises(ProtocolError) as err:
            protocol.decode(_wire(v=3, **bad))
        assert err.value.reason == "invalid_fields", bad


def test_v4_is_not_spoken():
    with pytest.raises(ProtocolError) as err:
        protocol.decode(_wire(v=4))
    assert err.value.reason == "unsupported_version"


def test_a_v3_heartbeat_reaches_ingest_over_the_real_link(broker, tmp_path):
    settings = trap_settings(tmp_path / "trap")
    store = open_store(settings)
    beat = heartbeat(settings, store, power=a_report, battery_wh=100.0)
    try:
        with running_ingest(broker, tmp_path / "cloud"):
            link = device_link(broker, "test-trap")
            link.connect(timeout=10)
            try:
                beat.tick(link)
                collect_until(link, lambda events: len(events) >= 1)
            finally:
                link.close()
    finally:
        store.close()
    rows = query(tmp_path / "cloud", "SELECT payload FROM telemetry")
    assert len(rows) == 1
    stored = Telemetry.model_validate_json(rows[0][0])
    assert stored.v == 3 and stored.battery_pct == 47.5 and stored.captures == 6


def test_a_snapshot_with_no_counters_yet_still_travels():
    empty = EnergySnapshot(since=SINCE, uptime_s=0.0, camera_on_s=0.0, radio_on_s=0.0, captures=0)
    fields = power_fields(PowerReport(profile="always-ready", board="pi4", counters=empty))
    msg = Telemetry(v=3, device_id="t", item_id="tel:2", sent_at=datetime.now(UTC), **fields)
    assert msg.counted_s == 0 and msg.cpu_s == {} and msg.battery_pct is None
