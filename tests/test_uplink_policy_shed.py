"""Low battery's first step: no blank media over any link; metadata, thumbnails and the
frames of animals still go, and the held blanks go once the battery recovers.

A real store with real bursts and verdicts; the real drain on a fake link that acknowledges
like ingest, on fake clocks (as tests/test_uplink_policy_defer.py).
"""

from __future__ import annotations

import pytest

from device.store.vocabulary import ItemKind, OutboxState, Priority, item_id_for
from device.uplink.connectivity import FixedProbe
from device.uplink.drain import FLUSH_INTERVAL_S, UNREADY_DELAY_S, Drain
from device.uplink.policy import METERED_MAX_PRIORITY, SHED_MAX_PRIORITY, SyncPolicy
from tests.support.clock import ManualClock
from tests.support.trap_db import classify, open_store, queue_captures
from tests.support.uplink import FakeLink
from tests.support.world import trap_settings

DEVICE = "test-trap"
WALL_START = 1_900_000_000.0


class Clocks:
    def __init__(self) -> None:
        self.mono = ManualClock(start=0.0)

    def wall(self) -> float:
        return WALL_START + self.mono.monotonic()


def run(drain: Drain, clocks: Clocks, rounds: int = 40) -> None:
    for n in range(rounds):
        clocks.mono.advance(UNREADY_DELAY_S if n % 4 == 3 else FLUSH_INTERVAL_S)
        drain.step()


def states(store) -> dict[str, str]:  # type: ignore[no-untyped-def]
    with store.db.read() as conn:
        return dict(conn.execute("SELECT item_id, state FROM outbox").fetchall())


@pytest.mark.parametrize("blank_policy", ["defer", "keep"])
def test_while_shedding_no_blank_frame_goes_and_everything_else_does(tmp_path, blank_policy):
    settings = trap_settings(tmp_path / "trap", vision={"blank_media_policy": blank_policy})
    store = open_store(settings)
    empty, fox = queue_captures(store, 2, frames=2)
    classify(store, empty, kind="blank")
    classify(store, fox, kind="animal", probability=0.95)
    blanks = {item_id_for(ItemKind.MEDIA, m) for m in empty.media_ids}
    clocks = Clocks()
    link = FakeLink(DEVICE, auto_ack=True)
    policy = SyncPolicy(store.db, metered_policy="all", clock=clocks.wall)
    policy.shed_blank_media = True  # what the battery monitor sets at stop_blank_media_pct
    drain = Drain(
        store.db,
        link,
        data_dir=store.data_dir,
        device_id=DEVICE,
        vision=True,
        policy=policy,
        probe=FixedProbe(True, "wifi"),
        clock=clocks.mono,
        wall_clock=clocks.wall,
    )
    try:
        run(drain, clocks)
        sent = set(link.item_ids_sent())
        assert not blanks & sent, "no blank frame went, even on Wi-Fi"
        assert {item_id_for(ItemKind.MEDIA, m) for m in fox.media_ids} <= sent
        assert {i for i in states(store) if i.startswith(("meta:", "thumb:"))} <= sent
        assert {s for i, s in states(store).items() if i in blanks} == {OutboxState.PENDING}

        policy.shed_blank_media = False  # the battery recovered
        run(drain, clocks)
        assert blanks <= set(link.item_ids_sent())
        assert set(states(store).values()) == {OutboxState.DONE}
    finally:
        drain.close()
        store.close()


def test_the_shed_cap_is_below_every_blank_class_and_keeps_the_metered_cap(tmp_path):
    store = open_store(trap_settings(tmp_path / "trap"))
    try:
        policy = SyncPolicy(store.db, metered_policy="thumbnails")
        assert Priority.MEDIA == SHED_MAX_PRIORITY < Priority.BLANK_MEDIA
        policy.shed_blank_media = True
        wifi, metered = policy.allowance("wifi"), policy.allowance("metered")
        assert wifi.max_priority == SHED_MAX_PRIORITY and len(wifi.kinds) == 3
        assert metered.max_priority == min(SHED_MAX_PRIORITY, METERED_MAX_PRIORITY)
        assert metered.kinds == (ItemKind.METADATA, ItemKind.THUMBNAIL)
        policy.override_all = True  # `camtrap sync --all`: the technician on site decides
        assert policy.allowance("metered").max_priority is None
    finally:
        store.close()
