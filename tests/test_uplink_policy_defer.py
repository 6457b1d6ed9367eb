"""Deferred blanks on the link: never over a metered one, whatever ``metered_policy`` says;
last on Wi-Fi; sent on a metered link only when a technician asks (``camtrap sync --all``).

A real store with real bursts and verdicts recorded through the store's door under the
default policy (``defer``); the real drain, on a fake link that acknowledges like ingest and
on fake clocks, so nothing sleeps.
"""

from __future__ import annotations

import pytest

from device.store.outbox import Outbox
from device.store.vocabulary import ItemKind, OutboxState, Priority, item_id_for
from device.uplink.connectivity import FixedProbe
from device.uplink.drain import FLUSH_INTERVAL_S, UNREADY_DELAY_S, Drain
from device.uplink.policy import METERED_MAX_PRIORITY, SyncPolicy
from tests.support.clock import ManualClock
from tests.support.trap_db import classify, open_store, queue_captures
from tests.support.uplink import FakeLink
from tests.support.world import trap_settings

DEVICE = "test-trap"
WALL_START = 1_900_000_000.0  # later than any commit: every queued item is due


class Clocks:
    def __init__(self) -> None:
        self.mono = ManualClock(start=0.0)

    def wall(self) -> float:
        return WALL_START + self.mono.monotonic()


@pytest.fixture
def trap(tmp_path):
    settings = trap_settings(tmp_path / "trap")
    assert settings.vision.blank_media_policy == "defer", "the default policy is under test"
    store = open_store(settings)
    yield store
    store.close()


def world(trap):  # type: ignore[no-untyped-def]
    """Two blank events (two frames each) and a fox, all classified; their ids."""
    empty1, fox, empty2 = queue_captures(trap, 3, frames=2)
    assert classify(trap, empty1, kind="blank") == []
    classify(trap, fox, kind="animal", probability=0.95)
    assert classify(trap, empty2, kind="blank") == []
    deferred = {item_id_for(ItemKind.MEDIA, m) for b in (empty1, empty2) for m in b.media_ids}
    return deferred, fox


def run(drain: Drain, clocks: Clocks, rounds: int = 40) -> None:
    """Rounds of the loop; every few, enough wall time for a waiting item to be due again."""
    for n in range(rounds):
        clocks.mono.advance(UNREADY_DELAY_S if n % 4 == 3 else FLUSH_INTERVAL_S)
        drain.step()


def make_drain(trap, link, clocks, policy, link_type: str, **kwargs) -> Drain:  # type: ignore[no-untyped-def]
    return Drain(
        trap.db,
        link,
        data_dir=trap.data_dir,
        device_id=DEVICE,
        vision=True,
        policy=policy,
        probe=FixedProbe(True, link_type),
        clock=clocks.mono,
        wall_clock=clocks.wall,
        **kwargs,
    )


def outbox(trap) -> dict[str, str]:  # type: ignore[no-untyped-def]
    with trap.db.read() as conn:
        return dict(conn.execute("SELECT item_id, state FROM outbox").fetchall())


def test_a_metered_link_never_carries_a_deferred_blank_even_with_metered_policy_all(trap):
    deferred, fox = world(trap)
    clocks = Clocks()
    link = FakeLink(DEVICE, auto_ack=True)
    policy = SyncPolicy(trap.db, metered_policy="all", clock=clocks.wall)
    drain = make_drain(trap, link, clocks, policy, "metered")
    run(drain, clocks)
    sent = set(link.item_ids_sent())
    assert {item_id_for(ItemKind.MEDIA, m) for m in fox.media_ids} <= sent, "animal media go"
    assert not deferred & sent, "no deferred blank went over the metered link"
    states = outbox(trap)
    assert {i for i, s in states.items() if s != OutboxState.DONE} == deferred
    assert {states[i] for i in deferred} == {OutboxState.PENDING}, "still queued, untouched"
    assert Outbox(trap.db).depth() == {"deferred_blank": 4}
    # Their thumbnails did go: the cloud sees every blank event's pictures.
    assert {i for i in sent if i.startswith("thumb:")} == {
        i for i in states if i.startswith("thumb:")
    }
    drain.close()


def test_on_wifi_the_deferred_blanks_go_and_go_last(trap):
    deferred, _ = world(trap)
    clocks = Clocks()
    link = FakeLink(DEVICE, auto_ack=True)
    policy = SyncPolicy(trap.db, metered_policy="all", clock=clocks.wall)
    drain = make_drain(trap, link, clocks, policy, "wifi", window_items=1)
    run(drain, clocks, rounds=120)
    sent = link.item_ids_sent()
    assert set(outbox(trap).values()) == {OutboxState.DONE}
    firsts = {item_id: sent.index(item_id) for item_id in reversed(sent)}
    last_other = max(at for item_id, at in firsts.items() if item_id not in deferred)
    assert min(firsts[i] for i in deferred) > last_other, f"deferred blanks not last: {sent}"
    drain.close()


def test_sync_all_is_the_technicians_override_and_sends_them_on_a_metered_link(trap):
    deferred, _ = world(trap)
    clocks = Clocks()
    link = FakeLink(DEVICE, auto_ack=True)
    policy = SyncPolicy(trap.db, metered_policy="metadata", clock=clocks.wall)
    policy.override_all = True  # what `camtrap sync --all` sets
    drain = make_drain(trap, link, clocks, policy, "metered")
    run(drain, clocks)
    assert deferred <= set(link.item_ids_sent())
    assert set(outbox(trap).values()) == {OutboxState.DONE}
    drain.close()


@pytest.mark.parametrize("metered_policy", ["metadata", "thumbnails", "all"])
def test_the_allowance_caps_a_metered_link_below_the_deferred_class(trap, metered_policy):
    policy = SyncPolicy(trap.db, metered_policy=metered_policy)
    metered = policy.allowance("metered")
    assert metered.max_priority == METERED_MAX_PRIORITY
    assert Priority.BLANK_MEDIA <= METERED_MAX_PRIORITY < Priority.DEFERRED_BLANK
    assert policy.allowance("wifi").max_priority is None
    policy.override_all = True
    assert policy.allowance("metered").max_priority is None


def test_a_capped_claim_and_the_next_due_time_leave_deferred_blanks_alone(trap):
    deferred, _ = world(trap)
    box = Outbox(trap.db, clock=lambda: WALL_START)
    media = (ItemKind.MEDIA,)
    box.complete([i for i in outbox(trap) if i.startswith("meta:")])
    capped = box.next_sendable_at(media, max_priority=METERED_MAX_PRIORITY)
    assert capped is not None, "the fox's frames are sendable"
    claimed = {i.item_id for i in box.claim(100, media, max_priority=METERED_MAX_PRIORITY)}
    assert claimed and not claimed & deferred
    box.release(claimed)
    box.complete(claimed)
    assert box.next_sendable_at(media, max_priority=METERED_MAX_PRIORITY) is None
    assert box.next_sendable_at(media) is not None, "uncapped, the deferred blanks are due"
    assert {i.item_id for i in box.claim(100, media)} == deferred
