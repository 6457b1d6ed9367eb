"""The drain loop against a real mosquitto and the real ingest: what arrives, in what order,
and what happens to items that cannot be sent."""

from __future__ import annotations

import hashlib
import time

import pytest

from device.store.outbox import Outbox
from device.uplink.connectivity import FixedProbe
from device.uplink.drain import Drain, last_sync_at
from device.uplink.policy import SyncPolicy
from tests.support.trap_db import classify, noise_jpeg, open_store, queue_captures
from tests.support.uplink import device_link, query, running_ingest
from tests.support.world import trap_settings

pytest_plugins = ["tests.support.broker"]
pytestmark = pytest.mark.timeout(90)

DEVICE = "test-trap"


def drain_until(drain: Drain, done, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        drain.step()


def drain_for(drain: Drain, seconds: float) -> None:
    """Let the loop run a while (to show that something does NOT happen)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        drain.step()


def outbox_states(store) -> dict[str, str]:  # type: ignore[no-untyped-def]
    with store.db.read() as conn:
        return {r[0]: r[1] for r in conn.execute("SELECT item_id, state FROM outbox")}


def settled(store) -> bool:  # type: ignore[no-untyped-def]
    return not [s for s in outbox_states(store).values() if s in ("pending", "inflight")]


@pytest.fixture
def trap(tmp_path):
    store = open_store(trap_settings(tmp_path / "trap"))
    yield store
    store.close()


def make_drain(store, link, **kwargs) -> Drain:  # type: ignore[no-untyped-def]
    return Drain(
        store.db,
        link,
        data_dir=store.data_dir,
        device_id=DEVICE,
        vision=kwargs.pop("vision", False),
        **kwargs,
    )


def drain_settled(broker, trap, cloud, **link_kwargs) -> None:
    """Drain the trap's outbox to a running ingest until nothing is left in flight."""
    with running_ingest(broker, cloud):
        link = device_link(broker, DEVICE, **link_kwargs)
        drain = make_drain(trap, link)
        try:
            drain_until(drain, lambda: settled(trap))
            drain.close()
        finally:
            link.close()


def test_every_capture_arrives_whole_and_is_marked_done_only_after_ingest_acks(
    broker, trap, tmp_path
):
    bursts = queue_captures(trap, 6, frames=3, size=(640, 480))
    cloud = tmp_path / "cloud"
    drain_settled(broker, trap, cloud, max_payload_cap=16 * 1024)  # several chunks each
    assert set(outbox_states(trap).values()) == {"done"}
    with trap.db.read() as conn:
        device_media = {r[0]: r[1] for r in conn.execute("SELECT media_id, sha256 FROM media")}
    stored = {r[0]: r for r in query(cloud, "SELECT media_id, file_path, sha256 FROM media")}
    assert set(stored) == set(device_media) == {m for b in bursts for m in b.media_ids}
    for media_id, (_, path, sha) in stored.items():
        data = (cloud / "media" / path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == sha == device_media[media_id]
    assert len(query(cloud, "SELECT event_id FROM events")) == 6
    assert last_sync_at(trap.db) is not None


def test_media_wait_for_their_metadata_and_thumbnails_go_before_full_frames(broker, trap, tmp_path):
    bursts = queue_captures(trap, 3, frames=2)
    for burst in bursts:
        classify(trap, burst)
    cloud = tmp_path / "cloud"
    sent: list[str] = []
    with running_ingest(broker, cloud):
        link = device_link(broker, DEVICE)
        real_send = link.send
        link.send = lambda message: (sent.append(message.item_id), real_send(message))[1]
        drain = make_drain(trap, link, vision=True)
        try:
            drain_until(drain, lambda: settled(trap))
            drain.close()
        finally:
            link.close()
    assert set(outbox_states(trap).values()) == {"done"}
    first_sends = list(dict.fromkeys(i.split(":")[0] for i in sent))
    assert first_sends == ["meta", "thumb", "media"]
    # Ingest never saw a file before its metadata (it would have rejected it as unknown).
    assert query(cloud, "SELECT count(*) FROM rejections") == [(0,)]
    assert query(cloud, "SELECT count(*) FROM media WHERE thumbnail_path IS NOT NULL") == [(6,)]


def test_metadata_waits_until_vision_classified_its_event(broker, trap, tmp_path):
    queue_captures(trap, 2, frames=1)
    cloud = tmp_path / "cloud"
    with running_ingest(broker, cloud):
        link = device_link(broker, DEVICE)
        drain = make_drain(trap, link, vision=True)
        try:
            drain_for(drain, 2.0)
            drain.close()
        finally:
            link.close()
    # Nothing went: the metadata waits for vision, the frames wait for their metadata.
    states = outbox_states(trap)
    assert {s for i, s in states.items() if i.startswith("meta:")} == {"waiting_classification"}
    assert {s for i, s in states.items() if i.startswith("media:")} == {"waiting_metadata"}
    assert query(cloud, "SELECT count(*) FROM events") == [(0,)]


def test_a_lost_file_kills_only_its_item_with_the_reason(broker, trap, tmp_path):
    [burst] = queue_captures(trap, 1, frames=2)
    lost = burst.media_ids[0]
    with trap.db.read() as conn:
        path = conn.execute("SELECT path FROM media WHERE media_id=?", (lost,)).fetchone()[0]
    (trap.data_dir / path).unlink()
    cloud = tmp_path / "cloud"
    drain_settled(broker, trap, cloud)
    states = outbox_states(trap)
    assert states.pop(f"media:{lost}") == "dead"
    assert set(states.values()) == {"done"}
    with trap.db.read() as conn:
        error = conn.execute(
            "SELECT last_error FROM outbox WHERE item_id=?", (f"media:{lost}",)
        ).fetchone()[0]
    assert "cannot read" in error


def test_a_metered_link_carries_metadata_only_and_wifi_then_carries_the_rest(
    broker, trap, tmp_path
):
    queue_captures(trap, 2, frames=2)
    cloud = tmp_path / "cloud"
    probe = FixedProbe(True, "metered")
    with running_ingest(broker, cloud):
        link = device_link(broker, DEVICE)
        drain = make_drain(trap, link, probe=probe)
        try:
            drain_until(drain, lambda: "pending" not in _meta_states(trap))
            drain_for(drain, 1.5)
            states = outbox_states(trap)
            assert {s for i, s in states.items() if i.startswith("meta:")} == {"done"}
            assert {s for i, s in states.items() if i.startswith("media:")} == {"pending"}
            probe.kind = "wifi"
            drain.wake()
            drain_until(drain, lambda: settled(trap))
        finally:
            link.close()
    assert set(outbox_states(trap).values()) == {"done"}


def test_the_daily_byte_budget_stops_media_but_not_metadata(broker, trap, tmp_path):
    queue_captures(trap, 3, frames=1, size=(320, 240))
    cloud = tmp_path / "cloud"
    with running_ingest(broker, cloud):
        link = device_link(broker, DEVICE)
        policy = SyncPolicy(trap.db, daily_byte_budget=1)
        drain = make_drain(trap, link, policy=policy, window_items=1)
        try:
            drain_until(drain, lambda: "pending" not in _meta_states(trap))
            drain_for(drain, 2.0)
        finally:
            link.close()
    states = outbox_states(trap)
    media = [s for i, s in states.items() if i.startswith("media:")]
    # One file went out and spent the budget; the rest waits for tomorrow.
    assert sorted(media) == ["done", "pending", "pending"]
    assert SyncPolicy(trap.db, daily_byte_budget=1).sent_today > 0


def _meta_states(store) -> set[str]:  # type: ignore[no-untyped-def]
    return {s for i, s in outbox_states(store).items() if i.startswith("meta:")}


def test_a_file_changed_on_disk_is_not_sent_as_the_capture(broker, trap, tmp_path):
    [burst] = queue_captures(trap, 1, frames=1)
    with trap.db.read() as conn:
        path = conn.execute(
            "SELECT path FROM media WHERE media_id=?", (burst.media_ids[0],)
        ).fetchone()[0]
    (trap.data_dir / path).write_bytes(noise_jpeg(32, 32, seed=9))
    cloud = tmp_path / "cloud"
    drain_settled(broker, trap, cloud)
    assert outbox_states(trap)[f"media:{burst.media_ids[0]}"] == "dead"
    assert query(cloud, "SELECT file_path FROM media") == [(None,)]
    assert Outbox(trap.db).depth() == {}
