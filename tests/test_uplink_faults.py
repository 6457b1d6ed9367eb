"""Faults during a drain, with real parts: a broker killed with SIGKILL, a link cut mid-upload.

Each test bounds its wait; the assertions are about what arrived, never about how fast.
"""

from __future__ import annotations

import hashlib
import time

import pytest

from device.uplink.drain import Drain, DrainThread
from tests.support.proxy import TcpProxy
from tests.support.trap_db import open_store, queue_captures
from tests.support.uplink import device_link, query, running_ingest, wait_until
from tests.support.world import trap_settings

pytest_plugins = ["tests.support.broker"]
pytestmark = pytest.mark.timeout(120)

DEVICE = "test-trap"


def outbox(store, sql: str, *args):  # type: ignore[no-untyped-def]
    with store.db.read() as conn:
        return conn.execute(sql, args).fetchall()


def settled(store) -> bool:  # type: ignore[no-untyped-def]
    return not outbox(store, "SELECT 1 FROM outbox WHERE state IN ('pending','inflight')")


def assert_everything_arrived(store, cloud) -> None:  # type: ignore[no-untyped-def]
    device = dict(outbox(store, "SELECT media_id, sha256 FROM media"))
    rows = query(cloud, "SELECT media_id, file_path, sha256 FROM media")
    assert {r[0] for r in rows} == set(device), "every capture has its row at ingest"
    for media_id, path, sha in rows:
        assert path is not None, f"{media_id} has no file at ingest"
        data = (cloud / "media" / path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == sha == device[media_id]
    assert query(cloud, "SELECT count(*), count(DISTINCT media_id) FROM media") == [
        (len(device), len(device))
    ]


@pytest.fixture
def trap(tmp_path):
    store = open_store(trap_settings(tmp_path / "trap"))
    yield store
    store.close()


def test_broker_killed_mid_drain_and_restarted_loses_no_capture(broker, trap, tmp_path):
    queue_captures(trap, 40, frames=2, size=(640, 480))
    cloud = tmp_path / "cloud"
    with running_ingest(broker, cloud):
        link = device_link(broker, DEVICE, max_payload_cap=32 * 1024)
        drain = Drain(
            trap.db,
            link,
            data_dir=trap.data_dir,
            device_id=DEVICE,
            vision=False,
            window_items=16,
            window_bytes=256 * 1024,
            ack_timeout_s=5,
        )
        thread = DrainThread(drain)
        thread.start()
        try:
            assert wait_until(
                lambda: len(outbox(trap, "SELECT 1 FROM outbox WHERE state='done'")) >= 10,
                timeout=30,
            )
            assert not settled(trap), "the kill must land mid-drain"
            broker.kill()
            time.sleep(1.0)
            broker.start()
            assert wait_until(lambda: settled(trap), timeout=60), broker.log_tail()
        finally:
            thread.stop()
            link.close()
        assert {s for (s,) in outbox(trap, "SELECT state FROM outbox")} == {"done"}
        assert_everything_arrived(trap, cloud)


def test_a_cut_link_resumes_a_chunked_upload_without_resending_acknowledged_chunks(
    broker, trap, tmp_path
):
    [burst] = queue_captures(trap, 1, frames=1, size=(2400, 1600))  # a few MB of noise
    media_item = f"media:{burst.media_ids[0]}"
    proxy = TcpProxy(broker.port)
    cloud = tmp_path / "cloud"
    sent: list[tuple[float, int]] = []  # (time, chunk index) of every chunk the device sent
    try:
        with running_ingest(broker, cloud):
            cert, key = broker.client_cert(DEVICE)
            from device.uplink.mqtt import MqttTransport

            link = MqttTransport(
                DEVICE,
                host="127.0.0.1",
                port=proxy.port,
                ca_file=broker.ca_file,
                cert_file=cert,
                key_file=key,
                max_payload_cap=8 * 1024,
            )
            real_send = link.send

            def spy(message):  # type: ignore[no-untyped-def]
                if message.item_id == media_item:
                    sent.append((time.monotonic(), message.index))
                return real_send(message)

            link.send = spy
            drain = Drain(
                trap.db,
                link,
                data_dir=trap.data_dir,
                device_id=DEVICE,
                vision=False,
                window_bytes=64 * 1024,
            )
            thread = DrainThread(drain)
            thread.start()
            try:

                def acked() -> int:
                    rows = outbox(
                        trap, "SELECT acked_chunks FROM outbox WHERE item_id=?", media_item
                    )
                    return rows[0][0]

                assert wait_until(lambda: acked() >= 20, timeout=30)
                proxy.block()  # the link is gone, and stays gone for a moment
                cut_at = time.monotonic()
                time.sleep(1.5)
                resumed_from = acked()
                proxy.unblock()
                assert wait_until(lambda: settled(trap), timeout=60)
            finally:
                thread.stop()
                link.close()
        after = [i for t, i in sent if t > cut_at]
        assert after, "the upload went on after the cut"
        assert resumed_from >= 20
        assert min(after) >= resumed_from, "no acknowledged chunk was sent again"
        assert proxy.connections >= 2
        assert_everything_arrived(trap, cloud)
    finally:
        proxy.close()
