"""Sync windows (``uplink.sync_windows``): outside them the trap does not connect and its radio
is off; at a window's start it switches the radio on, connects, sends what it holds and the
heartbeat with the device events queued since; at the end the link closes and the radio goes
off. ``camtrap sync`` on site opens a session for one sync, window or not.

Real mosquitto, the real ingest and a real store; the uplink room runs its own thread, and
time is a fake clock the test moves (the wall clock follows it), so a day of windows passes in
seconds. The radio is the dry-run switch: the test reads the nmcli commands it recorded.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from device.clock import ClockProbe
from device.config import Settings
from device.contracts.windows import Schedule
from device.power.counters import EnergyCounters
from device.power.radio import DryRunRadio
from device.runlock import SYNC_REQUEST
from device.store.outbox import Outbox
from device.store.store import MediaStore
from device.uplink.service import CLOSED_POLL_S, UplinkRoom
from device.uplink.session import SyncSessions
from tests.support.broker import Broker
from tests.support.clock import ManualClock
from tests.support.trap_db import mqtt_trap_settings, open_store, queue_captures
from tests.support.uplink import device_link, query, running_ingest, wait_until

pytest_plugins = ["tests.support.broker"]
pytestmark = pytest.mark.timeout(90)

DEVICE = "window-trap"
# Later than any commit a test makes, so queued items are due on the fake wall clock.
NOON = datetime(2030, 6, 1, 12, 0, tzinfo=UTC).timestamp()
OFF = ["nmcli", "radio", "wifi", "off"]
ON = ["nmcli", "radio", "wifi", "on"]


class Clocks:
    """The room's monotonic clock and the wall clock beside it, moved together."""

    def __init__(self, wall_start: float) -> None:
        self.mono = ManualClock(start=0.0)
        self.wall_start = wall_start

    def wall(self) -> float:
        return self.wall_start + self.mono.monotonic()

    def advance(self, seconds: float) -> None:
        self.mono.advance(seconds)

    def run(self, done: Callable[[], bool], timeout: float = 30.0, step: float = 0.2) -> bool:
        """Let trap time pass (``step`` fake seconds every 10 real ms) until ``done()``: the
        drain flushes and paces itself on this clock."""
        give_up = time.monotonic() + timeout
        while not done() and time.monotonic() < give_up:
            self.advance(step)
            time.sleep(0.01)
        return done()


@dataclass
class NoRetention:
    media_bytes: int = 0
    disk_full: bool = False


@dataclass
class Trap:
    settings: Settings
    store: MediaStore
    room: UplinkRoom
    radio: DryRunRadio
    clocks: Clocks
    counters: EnergyCounters

    def left(self) -> int:
        return Outbox(self.store.db).left()[0]  # type: ignore[arg-type]

    def connected(self) -> bool:
        return self.room.transport is not None and self.room.transport.is_connected

    def parked(self) -> None:
        """Wait until the uplink thread waits on the clock (between sessions or offline)."""
        self.clocks.mono.next_deadline(timeout=10.0)


@pytest.fixture
def trap_factory(tmp_path: Path) -> Iterator[Callable[..., Trap]]:
    made: list[Trap] = []

    def make(
        broker: Broker, *, windows: list[str], start: float, connect_timeout_s: float = 5.0
    ) -> Trap:
        settings = mqtt_trap_settings(
            tmp_path / "trap",
            broker,
            DEVICE,
            sync_windows=windows,
            radio_control="dry-run",
            mqtt={"connect_timeout_s": connect_timeout_s},
        )
        store = open_store(settings)
        queue_captures(store, 2, frames=1)
        clocks = Clocks(start)
        counters = EnergyCounters(clock=clocks.mono.monotonic, radio_always_on=False)
        radio = DryRunRadio(settings.uplink.radio, counters)
        room = UplinkRoom(
            settings,
            store=store,
            retention=NoRetention(),
            clock=ClockProbe(settings.clock),
            model_version=lambda: None,
            counters=counters,
            radio=radio,
            mono_clock=clocks.mono,
            wall_clock=clocks.wall,
        )
        trap = Trap(settings, store, room, radio, clocks, counters)
        made.append(trap)
        room.start()
        return trap

    yield make
    for trap in made:
        trap.room.stop()
        trap.store.close()


def cloud(root: Path, sql: str) -> list[tuple[object, ...]]:
    return query(root, sql)


def presence(root: Path) -> list[tuple[object, ...]]:
    return cloud(root, f"SELECT status FROM devices WHERE device_id = '{DEVICE}'")


def test_outside_a_window_the_trap_does_not_connect_and_its_radio_is_off(
    broker, trap_factory, tmp_path
):
    root = tmp_path / "cloud"
    with running_ingest(broker, root):
        trap = trap_factory(broker, windows=["18:00-19:00"], start=NOON)
        trap.parked()
        trap.clocks.advance(3 * CLOSED_POLL_S)  # a few idle rounds
        trap.parked()

        assert trap.radio.commands == [OFF]
        assert not trap.radio.is_on
        assert not trap.connected()
        assert trap.left() == 4, "nothing was sent (2 events: metadata and a frame each)"
        assert presence(root) == [], "the broker never saw the trap"
        assert trap.counters.snapshot().radio_on_s == pytest.approx(0.0)


def test_at_window_open_it_connects_sends_all_and_the_heartbeat_with_the_events_since(
    broker, trap_factory, tmp_path
):
    root = tmp_path / "cloud"
    with running_ingest(broker, root):
        trap = trap_factory(broker, windows=["12:01-13:00"], start=NOON)
        trap.parked()
        # Queued while offline: it waits for the window, with the heartbeat.
        trap.room.report_disk(True, "card full: captures stop")
        assert trap.radio.commands == [OFF]

        trap.clocks.advance(60)  # 12:01: the window opens
        assert trap.clocks.run(lambda: trap.left() == 0)

        assert trap.radio.commands == [OFF, ON]
        assert wait_until(lambda: cloud(root, "SELECT count(*) FROM telemetry")[0][0] >= 1)
        assert wait_until(lambda: cloud(root, "SELECT code FROM device_events") == [("disk_full",)])
        assert cloud(root, "SELECT count(*) FROM events") == [(2,)]
        assert presence(root) == [("online",)]
        assert trap.room.session_open


def test_at_window_close_the_link_closes_offline_is_retained_and_the_radio_goes_off(
    broker, trap_factory, tmp_path
):
    root = tmp_path / "cloud"
    with running_ingest(broker, root):
        trap = trap_factory(broker, windows=["12:00-12:30"], start=NOON)
        assert trap.clocks.run(lambda: trap.left() == 0)
        assert trap.radio.commands == [ON]

        queue_captures(trap.store, 1, frames=1, seed=7)
        trap.clocks.advance(30 * 60)  # 12:30: the window closes
        assert wait_until(lambda: not trap.room.session_open)
        trap.parked()

        assert trap.radio.commands == [ON, OFF]
        assert not trap.connected()
        assert wait_until(lambda: presence(root) == [("offline",)])
        left_at_close = trap.left()
        assert left_at_close <= 2, "what was not acknowledged is back in the outbox"
        trap.clocks.advance(10 * CLOSED_POLL_S)
        trap.parked()
        assert trap.left() == left_at_close, "nothing goes out between windows"


def test_the_next_window_opens_the_same_link_again(broker, trap_factory, tmp_path):
    root = tmp_path / "cloud"
    with running_ingest(broker, root):
        trap = trap_factory(broker, windows=["12:00-12:10", "12:20-12:30"], start=NOON)
        assert trap.clocks.run(lambda: trap.left() == 0)
        trap.clocks.advance(10 * 60)
        assert wait_until(lambda: not trap.room.session_open)
        [(beats,)] = cloud(root, "SELECT count(*) FROM telemetry")
        queue_captures(trap.store, 2, frames=1, seed=3)

        trap.clocks.advance(10 * 60)  # 12:20
        assert trap.clocks.run(lambda: trap.left() == 0)
        assert cloud(root, "SELECT count(*) FROM events") == [(4,)]
        assert trap.radio.commands == [ON, OFF, ON]
        assert wait_until(lambda: cloud(root, "SELECT count(*) FROM telemetry")[0][0] > beats)


def test_camtrap_sync_outside_the_windows_switches_the_radio_on_for_that_sync_only(
    broker, trap_factory, tmp_path
):
    root = tmp_path / "cloud"
    with running_ingest(broker, root):
        trap = trap_factory(broker, windows=["18:00-19:00"], start=NOON)
        trap.parked()
        assert trap.radio.commands == [OFF]

        # What `camtrap sync` leaves for a running agent (device/uplink/commands.py).
        request = trap.settings.storage.data_dir / SYNC_REQUEST
        request.write_text(json.dumps({"all": False, "at": time.time()}))
        assert trap.clocks.run(lambda: trap.left() == 0 and not request.exists())
        assert trap.clocks.run(lambda: not trap.room.session_open)
        trap.parked()

        assert trap.radio.commands == [OFF, ON, OFF]
        assert cloud(root, "SELECT count(*) FROM events") == [(2,)]
        # One heartbeat as the session opened, one (at least) once the sync had sent it all.
        assert wait_until(lambda: cloud(root, "SELECT count(*) FROM telemetry")[0][0] >= 2)
        assert not trap.connected()


def test_the_sync_now_command_also_opens_a_session_outside_the_windows(
    broker, trap_factory, tmp_path
):
    with running_ingest(broker, tmp_path / "cloud"):
        trap = trap_factory(broker, windows=["18:00-19:00"], start=NOON)
        trap.parked()
        assert trap.room.sync_now() == "draining"
        assert trap.clocks.run(lambda: trap.left() == 0)
        assert trap.clocks.run(lambda: trap.radio.commands == [OFF, ON, OFF])


def test_a_sync_asked_for_with_no_network_gives_up_and_switches_the_radio_off(
    broker_factory, trap_factory, tmp_path
):
    broker = broker_factory()
    trap = trap_factory(broker, windows=["18:00-19:00"], start=NOON, connect_timeout_s=0.3)
    trap.parked()
    broker.stop()  # no cloud to reach: the drain backs off
    trap.room.sync_now()
    assert trap.clocks.run(lambda: trap.radio.commands == [OFF, ON], step=1.0)
    assert trap.clocks.run(lambda: trap.radio.commands == [OFF, ON, OFF], step=5.0, timeout=60)
    assert trap.left() == 4
    assert trap.clocks.mono.monotonic() >= 600.0, "it tried for the whole sync"


def test_no_sync_windows_is_the_old_behaviour_and_the_radio_is_left_alone(
    broker, trap_factory, tmp_path
):
    with running_ingest(broker, tmp_path / "cloud"):
        trap = trap_factory(broker, windows=[], start=NOON)
        assert trap.clocks.run(lambda: trap.left() == 0)
        trap.clocks.advance(24 * 3600)
        queue_captures(trap.store, 1, frames=1, seed=5)
        trap.room.drain.wake()  # type: ignore[union-attr]
        assert trap.clocks.run(lambda: trap.left() == 0)
        assert trap.connected()
        assert trap.radio.commands == []


def test_an_agent_that_stops_between_windows_leaves_the_radio_on(broker, trap_factory):
    trap = trap_factory(broker, windows=["18:00-19:00"], start=NOON)
    trap.parked()
    trap.room.stop()
    assert trap.radio.commands == [OFF, ON]
    assert trap.radio.is_on


def test_windows_changed_by_remote_config_apply_at_once(broker, trap_factory, tmp_path):
    with running_ingest(broker, tmp_path / "cloud"):
        trap = trap_factory(broker, windows=["18:00-19:00"], start=NOON)
        trap.parked()
        trap.settings.uplink.sync_windows = ["11:00-13:00"]  # as remote config sets it
        assert trap.clocks.run(lambda: trap.left() == 0)
        assert trap.radio.commands == [OFF, ON]


# -- the MQTT link closed and opened again, as at every window ---------------------------------


def test_an_mqtt_link_closed_and_connected_again_works_and_offline_is_retained_between(
    broker, tmp_path
):
    root = tmp_path / "cloud"
    from device import protocol
    from device.protocol import Telemetry
    from tests.support.uplink import collect_until, completed

    with running_ingest(broker, root):
        link = device_link(broker, DEVICE)
        try:
            for n in range(3):
                link.connect(timeout=10)
                assert wait_until(lambda: presence(root) == [("online",)])
                link.send(
                    Telemetry(device_id=DEVICE, item_id=f"tel:{n}", sent_at=protocol.utc_now())
                )
                assert collect_until(link, completed({f"tel:{n}"}))
                link.close()
                assert not link.is_connected
                assert wait_until(lambda: presence(root) == [("offline",)])
        finally:
            link.close()
    assert cloud(root, "SELECT item_id FROM telemetry ORDER BY item_id") == [
        ("tel:0",),
        ("tel:1",),
        ("tel:2",),
    ]


# -- when a session is wanted (no link, no thread) ---------------------------------------------


def sessions(windows: list[str], zone: str, at: datetime) -> tuple[SyncSessions, ManualClock]:
    clock = ManualClock(start=0.0)
    start = at.timestamp()
    schedule = Schedule.parse(windows, zone)
    return (
        SyncSessions(lambda: schedule, clock=clock, wall_clock=lambda: start + clock.monotonic()),
        clock,
    )


def test_a_window_is_judged_in_the_trap_time_zone() -> None:
    # 16:30 UTC is 18:30 in Berlin (summer time): inside 18:00-19:00 local.
    s, _ = sessions(["18:00-19:00"], "Europe/Berlin", datetime(2030, 6, 1, 16, 30, tzinfo=UTC))
    assert s.wanted()[0]
    s, _ = sessions(["18:00-19:00"], "UTC", datetime(2030, 6, 1, 16, 30, tzinfo=UTC))
    assert s.wanted() == (False, "outside the sync windows (18:00-19:00)")
    assert s.seconds_until_open() == pytest.approx(90 * 60)


def test_a_sync_asked_for_lasts_until_finished_or_its_limit() -> None:
    s, clock = sessions(["18:00-19:00"], "UTC", datetime(2030, 6, 1, 12, 0, tzinfo=UTC))
    s.ask("camtrap sync")
    assert s.wanted() == (True, "camtrap sync, outside the sync windows (18:00-19:00)")
    s.finished()
    assert not s.wanted()[0]
    s.ask("camtrap sync")
    clock.advance(s.on_demand_max_s)
    assert not s.wanted()[0]


def test_no_windows_means_always() -> None:
    s, _ = sessions([], "UTC", datetime(2030, 6, 1, 3, 0, tzinfo=UTC))
    assert s.wanted() == (True, "no sync windows: always")
    assert s.always
    assert s.seconds_until_open() == 0.0
