"""Uplink benchmarks: drain throughput against raw paho, outbox scaling, a month's backlog.

``drain_ratio``: N captures (metadata + one 200 KB thumbnail each) drained by the real drain
loop to a local mosquitto (TLS, client certificates) with ``camtrap-cloud ingest`` running in
its own process and acking; the rate (items/s, done only on ingest's ``complete``) is divided
by a raw paho QoS 1 publish loop of the same payloads, to the same broker, in the same run,
WITH the same ingest still subscribed (it answers them as duplicates). The raw loop waits only
for PUBACKs, so the ratio is the price of end-to-end delivery. N defaults to 10,000 (set
CAMTRAP_BENCH_UPLINK_N to change it).
"""

from __future__ import annotations

import io
import os
import shutil
import ssl
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image

from tests.bench.common import emit, median

THUMB_BYTES = 200 * 1024


def _thumbnail_200k() -> bytes:
    """A real JPEG of about 200 KB (noise compresses badly, so size is predictable)."""
    rng = np.random.default_rng(7)
    side = 300
    while True:
        pixels = rng.integers(0, 255, (side * 3 // 4, side, 3), dtype=np.uint8)
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, "JPEG", quality=90)
        if len(out.getvalue()) >= THUMB_BYTES:
            return out.getvalue()
        side += 20


def _fill_device_db(root: Path, n: int, thumb: bytes) -> Path:
    """Settings and a store holding ``n`` closed events with one media row and a thumbnail."""
    from device.store.outbox import PRIORITY, item_id_for
    from device.store.store import MediaStore
    from tests.support.world import trap_settings

    settings = trap_settings(root, uplink={"network_manager": False})
    store = MediaStore(settings)
    store.open()
    assert store.db is not None
    thumbs = root / "data" / "thumbs"
    thumbs.mkdir()
    master = thumbs / "master.jpg"
    master.write_bytes(thumb)
    import hashlib

    sha = hashlib.sha256(thumb).hexdigest()
    t0 = datetime(2026, 5, 1, tzinfo=UTC)
    now = time.time()
    events, media, outbox = [], [], []
    for i in range(n):
        ev, mid = str(uuid.uuid4()), str(uuid.uuid4())
        at = (t0 + timedelta(minutes=i)).isoformat()
        rel = f"thumbs/{mid}.jpg"
        os.link(master, root / "data" / rel)  # same bytes, own file: read per item like real
        events.append((ev, "dep-1", "activityDetection", "pir", at, at, 1, "rtc", 1, "closed", i))
        media.append(
            (
                mid,
                ev,
                0,
                at,
                None,
                None,
                None,
                2304,
                1296,
                "activityDetection",
                "pir",
                "rtc",
                1,
                "evicted",
                rel,
                sha,
                len(thumb),
            )
        )
        outbox.append(
            (item_id_for("metadata", ev), "metadata", ev, PRIORITY["metadata"], now + i * 1e-6, 0)
        )
        outbox.append(
            (
                item_id_for("thumbnail", mid),
                "thumbnail",
                mid,
                PRIORITY["thumbnail"],
                now + i * 1e-6,
                len(thumb),
            )
        )
    with store.db.write() as conn:
        conn.executemany(
            "INSERT INTO events (event_id, deployment_id, capture_method, trigger_source,"
            " started_at, ended_at, frame_count, clock_source, clock_synced, state, created_seq)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            events,
        )
        conn.executemany(
            "INSERT INTO media (media_id, event_id, seq, captured_at, path, sha256, size, width,"
            " height, capture_method, trigger_source, clock_source, clock_synced, state,"
            " thumb_path, thumb_sha256, thumb_size) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            media,
        )
        conn.executemany(
            "INSERT INTO outbox (item_id, kind, ref_id, priority, created_at, bytes)"
            " VALUES (?,?,?,?,?,?)",
            outbox,
        )
    store.close()
    return root / "data"


def bench_drain_ratio(n: int) -> None:
    from cloud_stub.broker import Broker, free_port
    from device import protocol
    from device.store.db import Database
    from device.store.media import Media
    from device.store.outbox import Outbox
    from device.store.vocabulary import item_id_for
    from device.uplink import payloads
    from device.uplink.drain import Drain
    from tests.support.uplink import device_link

    work = Path(tempfile.mkdtemp(prefix="camtrap-bench-uplink-"))
    broker = Broker(work / "broker", free_port())
    broker.start()
    device = "test-trap"
    cert, key = broker.client_cert(device)
    ingest = subprocess.Popen(
        broker.ingest_command(work / "cloud", log_level="WARNING"),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert ingest.stdout is not None and "ingest ready" in ingest.stdout.readline()
        thumb = _thumbnail_200k()
        data_dir = _fill_device_db(work / "trap", n, thumb)
        db = Database(data_dir / "camtrap.db")
        link = device_link(broker, device)
        link.connect(timeout=10)
        drain = Drain(db, link, data_dir=data_dir, device_id=device, vision=False)
        box = Outbox(db)
        start = time.perf_counter()
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline:
            drain.step()
            if drain.idle() and not box.depth():
                break
        drain_s = time.perf_counter() - start
        left = sum(box.depth().values())
        link.close()
        items = 2 * n - left
        drain_rate = items / drain_s

        # The same payloads, encoded up front in slices (2 GB would not fit in RAM at once).
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

        raw = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id="bench-raw",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        ctx = ssl.create_default_context(cafile=str(broker.ca_file))
        ctx.load_cert_chain(str(cert), str(key))
        raw.tls_set_context(ctx)
        raw.max_inflight_messages_set(64)  # the same window paho gets in MqttTransport
        raw.max_queued_messages_set(0)
        raw.connect("127.0.0.1", broker.port)
        raw.loop_start()
        raw_s = 0.0
        conn = db.conn
        refs = conn.execute(
            "SELECT o.ref_id, m.media_id FROM outbox o JOIN media m ON m.event_id = o.ref_id"
            " WHERE o.kind='metadata' ORDER BY o.created_at"
        ).fetchall()
        limit = 1024 * 1024
        for start_i in range(0, len(refs), 1000):
            batch: list[tuple[str, bytes]] = []
            for ev, mid in refs[start_i : start_i + 1000]:
                meta = payloads.capture_meta(db, device, item_id_for("metadata", ev), ev, False)
                batch.append((protocol.topic_for(meta), protocol.encode(meta)))
                row = Media(db).get(mid)
                f = payloads.media_file(data_dir, row, "thumbnail", mid)
                for chunk in protocol.split_media(
                    f.data,
                    max_payload_bytes=limit,
                    device_id=device,
                    item_id=f"thumb:{mid}",
                    media_id=mid,
                    kind="thumbnail",
                ):
                    batch.append((protocol.topic_for(chunk), protocol.encode(chunk)))
            t = time.perf_counter()
            infos = [raw.publish(topic, payload, qos=1) for topic, payload in batch]
            for info in infos:
                info.wait_for_publish(60)
            raw_s += time.perf_counter() - t
        raw.disconnect()
        raw.loop_stop()
        raw_rate = 2 * len(refs) / raw_s
        db.close()
    finally:
        ingest.terminate()
        ingest.wait(30)
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    mb = len(thumb) / 1e6
    print(
        f"# drain_ratio: n={n} captures ({2 * n} items, thumbnails {len(thumb)} B); drain "
        f"{drain_s:.1f} s ({drain_rate:.0f} items/s, {drain_rate / 2 * mb:.1f} MB/s), left {left};"
        f" raw paho QoS1 {raw_s:.1f} s ({raw_rate:.0f} items/s), ingest subscribed during both"
    )
    emit("drain_items_per_s", drain_rate, "items/s")
    emit("raw_paho_items_per_s", raw_rate, "items/s")
    emit("drain_ratio", drain_rate / raw_rate, "ratio")


def bench_outbox_scaling() -> None:
    from device.store.db import Database
    from device.store.outbox import PRIORITY, Outbox

    def cost_at(queued: int) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            db = Database(Path(tmp) / "camtrap.db")
            box = Outbox(db)
            now = time.time()
            with db.write() as conn:
                conn.executemany(
                    "INSERT INTO outbox (item_id, kind, ref_id, priority, created_at, bytes)"
                    " VALUES (?, 'media', ?, ?, ?, 1000)",
                    [(f"media:q{i}", f"q{i}", PRIORITY["media"], now + i) for i in range(queued)],
                )
            times = []
            for i in range(300):
                t = time.perf_counter()
                with db.write() as conn:
                    Outbox.enqueue(conn, "metadata", f"c{i}", PRIORITY["metadata"])
                [item] = box.claim(1)
                box.complete([item.item_id])
                times.append(time.perf_counter() - t)
            db.close()
            return median(times)

    small, big = cost_at(1_000), cost_at(100_000)
    emit("outbox_cycle_1k_ms", small * 1000, "ms")
    emit("outbox_cycle_100k_ms", big * 1000, "ms")
    emit("outbox_scaling_ratio", big / small, "ratio")


def bench_backlog() -> None:
    """30 days offline at 200 captures a day, default policy, against a 32 GB card."""
    from device.config import CameraSection, Settings
    from device.hardware.camera_synthetic import SyntheticCamera
    from device.store.thumbs import make_thumbnail

    defaults = Settings()
    camera = SyntheticCamera(CameraSection(backend="synthetic"))  # 2304x1296, q90 defaults
    camera.start()
    fulls, thumbs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(12):
            frame = camera.capture()
            fulls.append(len(frame.jpeg))
            path = Path(tmp) / f"{i}.jpg"
            path.write_bytes(frame.jpeg)
            thumbs.append(len(make_thumbnail(path)))
            time.sleep(SyntheticCamera.NEW_SCENE_GAP_S / 10)
    camera.close()
    db_per_event = _db_bytes_per_event()
    frames = defaults.capture.burst_frames
    blank_share = 0.7  # assumed: field studies commonly report most triggers are empty
    full, thumb = float(np.mean(fulls)), float(np.mean(thumbs))
    # "defer" (the default) and "keep" hold every blank frame in full; "thumbnail" only a thumbnail.
    policy = defaults.vision.blank_media_policy
    blank_frame = thumb if policy == "thumbnail" else (0 if policy == "delete" else full + thumb)
    per_capture = frames * ((1 - blank_share) * (full + thumb) + blank_share * blank_frame)
    per_capture += db_per_event
    total = per_capture * 200 * 30
    print(
        f"# backlog_30d: capture = one burst of {frames} frames; full frame {full:.0f} B,"
        f" thumbnail {thumb:.0f} B, DB {db_per_event:.0f} B/event, blank share {blank_share}"
        f" (assumed), blank policy {policy}; {per_capture / 1e6:.2f} MB per capture"
    )
    emit("bytes_per_capture", per_capture, "bytes")
    emit("backlog_30d_gb", total / 1e9, "GB")
    emit("backlog_30d_share_of_32gb_card", total / 32e9, "ratio")


def _db_bytes_per_event() -> float:
    """DB growth per event with 3 media, observations and outbox rows (real store code)."""
    from device.store.store import MediaStore
    from tests.support.trap_db import classify, queue_captures
    from tests.support.world import trap_settings

    with tempfile.TemporaryDirectory() as tmp:
        store = MediaStore(trap_settings(Path(tmp)))
        store.open()
        bursts = queue_captures(store, 200, frames=3, size=(32, 24))
        for b in bursts:
            classify(store, b, thumbnail=b"\xff\xd8\xff\xd9")
        store.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[union-attr]
        size = (Path(tmp) / "data" / "camtrap.db").stat().st_size
        store.close()
        return size / 200


def main() -> None:
    bench_outbox_scaling()
    bench_backlog()
    bench_drain_ratio(int(os.environ.get("CAMTRAP_BENCH_UPLINK_N", "10000")))


if __name__ == "__main__":
    main()
