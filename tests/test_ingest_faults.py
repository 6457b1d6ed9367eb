"""Faults three ingest workers on PostgreSQL must survive: nothing lost, nothing stored twice.

Each test runs three real ``camtrap-cloud ingest`` processes in one MQTT shared subscription
on a real mosquitto, and a device that resends whatever was not acked (as a trap's drain
does). "Stored once" is read from the ``stored.*`` counters, which count each store, not from
row counts alone (the unique keys would hide a second store).
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import psycopg
import pytest

from cloud_stub.ingest.core import Incoming, Ingestor, Outcome
from cloud_stub.ingest.mqtt_source import MqttIngest
from device import protocol
from device.protocol import Ack, CaptureMeta, MediaChunk, Telemetry
from tests.support.uplink import (
    collect_until,
    completed,
    device_link,
    ingest_source,
    query,
    wait_until,
)
from tests.support.workers import (
    SHARE_GROUP,
    Backlog,
    IngestWorker,
    PgStore,
    ResendingDevice,
    backlog,
    start_worker,
)

pytestmark = pytest.mark.timeout(120)

DEVICE = "trap-11"


def three_workers(
    workdir: Path, root: Path, db_url: str, broker, extra: tuple[str, ...] = ()
) -> list[IngestWorker]:
    return [
        start_worker(workdir, root, db_url, f"ingest-{n}", broker=broker, extra=extra)
        for n in (1, 2, 3)
    ]


def assert_stored_once(store: PgStore, root: Path, items: Backlog) -> dict[str, int]:
    counters = store.counters()
    assert counters.get("stored.capture") == items.captures
    assert counters.get("stored.telemetry", 0) == items.telemetry
    assert counters.get("stored.full") == items.captures
    assert store.scalar("SELECT count(*) FROM events") == items.captures
    assert store.scalar("SELECT count(*) FROM received") == items.captures + items.telemetry
    assert store.scalar("SELECT count(*) FROM partial_chunks") == 0
    paths = dict(store.rows("SELECT media_id, file_path FROM media"))
    for media_id, data in items.files.items():
        on_disk = (root / "media" / paths[media_id]).read_bytes()
        assert hashlib.sha256(on_disk).hexdigest() == hashlib.sha256(data).hexdigest(), media_id
    return counters


def test_one_of_three_workers_sigkilled_mid_media_loses_nothing_and_stores_once(
    broker, postgres_db, tmp_path
):
    root = tmp_path / "cloud"
    # One large file (its chunks spread over all three workers), then smaller captures.
    big = backlog(DEVICE, captures=1, file_bytes=600_000)
    rest = backlog(DEVICE, captures=20, telemetry=20, file_bytes=9000)
    items = Backlog(
        big.messages + rest.messages,
        {**big.files, **rest.files},
        big.captures + rest.captures,
        rest.telemetry,
        big.chunks + rest.chunks,
    )
    big_media = next(iter(big.files))
    # The killed worker's session must not outlive it for long: until the broker drops it,
    # the broker keeps giving it a third of the stream (cloud_stub/ingest/mqtt_source.py).
    workers = three_workers(tmp_path, root, postgres_db, broker, ("--session-expiry", "2"))
    store = PgStore(postgres_db)
    link = device_link(broker, DEVICE)

    def file_half_assembled() -> bool:
        held = store.scalar("SELECT count(*) FROM partial_chunks WHERE media_id = %s", big_media)
        return held is not None and held >= big.chunks // 3

    try:
        link.connect(timeout=10)
        device = ResendingDevice(link, resend_after_s=3.0)
        device.queue(items.messages)
        started = time.monotonic()
        assert device.drain(timeout=60, until=file_half_assembled), "the file never got going"
        # Still mid-drain and mid-file: the kill cuts it while the others hold some of its chunks.
        assert device.outstanding
        assert store.scalar("SELECT file_path FROM media WHERE media_id = %s", big_media) is None
        workers[0].kill()
        assert device.drain(timeout=60), f"{len(device.outstanding)} never acked"
        drained_s = time.monotonic() - started
        survivors = [worker.stop() for worker in workers[1:]]
    finally:
        link.close()
        for worker in workers:
            worker.close()
    assert_stored_once(store, root, items)
    assert all(summary["processed"] > 0 for summary in survivors)
    print(
        f"\nkill: {len(items.messages)} messages ({items.chunks} chunks) in {drained_s:.1f} s,"
        f" device resent {device.resent}"
    )


def test_postgresql_restarted_mid_ingest_workers_reconnect_and_lose_nothing(
    broker, private_postgres, tmp_path
):
    db_url = private_postgres.new_database("ingest")
    root = tmp_path / "cloud"
    items = backlog(DEVICE, captures=60, telemetry=60, file_bytes=9000)
    workers = three_workers(tmp_path, root, db_url, broker)
    store = PgStore(db_url)
    link = device_link(broker, DEVICE)
    try:
        link.connect(timeout=10)
        device = ResendingDevice(link, resend_after_s=5.0)
        device.queue(items.messages)
        started = time.monotonic()
        some_stored = lambda: (store.scalar("SELECT count(*) FROM received") or 0) >= 10  # noqa: E731
        assert device.drain(timeout=60, until=some_stored)
        assert device.outstanding, "the backlog drained before the restart: make it bigger"
        restart_started = time.monotonic()
        private_postgres.restart()
        restart_s = time.monotonic() - restart_started
        assert device.drain(timeout=90), f"{len(device.outstanding)} never acked"
        drained_s = time.monotonic() - started
        summaries = [worker.stop() for worker in workers]
    finally:
        link.close()
        for worker in workers:
            worker.close()
    assert_stored_once(store, root, items)
    logs = "".join(worker.errors() for worker in workers)
    assert "ingest batch will be retried" in logs  # they met the restart and came through it
    assert len(summaries) == 3
    print(
        f"\npg restart ({restart_s:.1f} s): {len(items.messages)} messages in {drained_s:.1f} s,"
        f" device resent {device.resent}"
    )


def test_a_flood_of_duplicates_across_workers_is_stored_once_and_counted(
    broker, postgres_db, tmp_path
):
    root = tmp_path / "cloud"
    items = backlog(DEVICE, captures=10, telemetry=30, file_bytes=9000)
    metas = [m for m in items.messages if isinstance(m, CaptureMeta)]
    chunks = [m for m in items.messages if isinstance(m, MediaChunk)]
    telemetry = [m for m in items.messages if isinstance(m, Telemetry)]
    copies = 8
    workers = three_workers(tmp_path, root, postgres_db, broker)
    store = PgStore(postgres_db)
    link = device_link(broker, DEVICE)
    try:
        link.connect(timeout=10)
        device = ResendingDevice(link)
        # The metadata first, so no chunk can overtake it (that is a rejection, not a copy).
        device.queue(metas)
        assert device.drain(timeout=30)
        flood = metas + chunks + telemetry
        published = device.send_copies(flood, copies)
        started = time.monotonic()

        def all_handled() -> bool:
            # Each copy is counted once: stored, or a duplicate; a chunk's first copy is only
            # held (no counter), and the metadata was all stored before the flood.
            counters = store.counters()
            handled = len(chunks) + sum(
                counters.get(name, 0)
                for name in (
                    "duplicates.capture",
                    "duplicates.chunk",
                    "duplicates.telemetry",
                    "stored.telemetry",
                )
            )
            return handled >= published

        assert wait_until(all_handled, 60)
        counted_s = time.monotonic() - started
        summaries = [worker.stop() for worker in workers]
    finally:
        link.close()
        for worker in workers:
            worker.close()

    counters = assert_stored_once(store, root, items)
    assert counters.get("duplicates.capture") == len(metas) * copies
    # The telemetry came only in the flood: its first copy was stored.
    assert counters.get("duplicates.telemetry") == len(telemetry) * (copies - 1)
    # Every chunk but one copy of each is a duplicate, before its file was whole or after.
    assert counters.get("duplicates.chunk") == len(chunks) * (copies - 1)
    assert not any(name.startswith("rejected.") for name in counters), counters
    processed = [summary["processed"] for summary in summaries]
    assert all(count > 0 for count in processed), processed
    # What the device published, plus its "online" status: the broker redelivered nothing.
    assert sum(processed) == published + len(metas) + 1
    print(f"\nflood: {published} copies over 3 workers {processed}, counted in {counted_s:.1f} s")


class StoreDown:
    """Stands in for an Ingestor whose store stays down: every batch raises (as
    ``handle_batch`` does once its own retries are spent)."""

    def __init__(self) -> None:
        self.calls = 0

    def handle_batch(self, items: list[Incoming]) -> list[Outcome]:
        self.calls += 1
        raise psycopg.OperationalError("connection to server at 127.0.0.1 failed")


def mqtt_worker(broker, ingestor, client_id: str) -> MqttIngest:
    return ingest_source(
        broker,
        ingestor,
        client_id=client_id,
        share_group=SHARE_GROUP,
        first_retry_wait_s=0.05,
    )


def test_a_batch_the_store_refuses_is_never_acked_and_the_broker_gives_it_again(broker, tmp_path):
    down = StoreDown()
    failing = mqtt_worker(broker, down, "ingest-1")
    failing.start(timeout=10)
    link = device_link(broker, DEVICE)
    try:
        link.connect(timeout=10)
        link.send(Telemetry(device_id=DEVICE, item_id="tel:1", sent_at=protocol.utc_now()))
        # The worker keeps the batch and tries again, acking nothing meanwhile.
        assert wait_until(lambda: down.calls >= 3, 10)
        assert link.next_event(timeout=0.5) is None
        failing.stop()
        # The same session comes back with a store that works: the broker still owes it the
        # message (no PUBACK went out), and it is stored and acked now. The device never resent.
        ingestor = Ingestor(tmp_path / "cloud")
        healthy = mqtt_worker(broker, ingestor, "ingest-1")
        healthy.start(timeout=10)
        try:
            events = collect_until(link, completed({"tel:1"}), timeout=20)
        finally:
            healthy.stop()
            ingestor.close()
    finally:
        link.close()
    assert [e.item_id for e in events if isinstance(e, Ack) and e.chunk == "complete"] == ["tel:1"]
    assert query(tmp_path / "cloud", "SELECT item_id FROM telemetry") == [("tel:1",)]
