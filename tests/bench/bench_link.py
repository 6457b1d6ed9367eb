"""The drain over slow links: how full it keeps the link, and what the wire costs per payload byte.

device (the real ``Drain`` and ``MqttTransport``) -> ``tests.support.link_emulator`` (shaped
TCP proxy) -> mosquitto (TLS, client certificates) <- ``camtrap-cloud ingest`` in its own
process, acking after it committed. Captures are metadata plus a ~200 KB JPEG thumbnail.

* ``drain_link_utilisation_<link>``: payload bytes done (ingest's ``complete``) per second over
  the link's rate, in steady state: from the moment the first 10% of the payload was done to
  the last item, so the first claim and the first round trip are left out (TLS connects before
  the clock starts). Payload = thumbnail bytes + encoded metadata bytes.
* ``wire_overhead_ratio``: bytes the emulator carried both ways (TLS records, MQTT framing,
  chunk headers, acks, PUBACKs; IP/TCP headers are not visible to a user-space proxy) over the
  payload bytes, on the cellular run, from the connect to the last ``complete``.
* ``drain_lan_mb_per_s``: the same drain through the unshaped emulator.

The emulator terminates TCP on loopback at both ends, so the emulated RTT does not slow TCP's
own window: what it tests is the drain's window, paho's in-flight limit and ingest's acks.
``CAMTRAP_BENCH_LINK_SCALE`` (default 1.0) scales the number of captures of every run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.bench.bench_uplink import _fill_device_db, _thumbnail_200k
from tests.bench.common import emit
from tests.support.link_emulator import CELLULAR, LAN, SATELLITE, Link, LinkEmulator

DEVICE = "test-trap"


@dataclass
class Run:
    name: str
    link: Link
    captures: int
    seconds: float = 0.0
    steady_bytes_per_s: float = 0.0
    payload_bytes: int = 0
    wire_bytes: int = 0
    retries: int = 0
    left: int = 0


def _run(run: Run, broker: object, work: Path, thumb: bytes) -> Run:
    from cloud_stub.broker import Broker
    from device import protocol
    from device.store.db import Database
    from device.store.outbox import Outbox
    from device.store.vocabulary import ItemKind, item_id_for
    from device.uplink import payloads
    from device.uplink.drain import Drain
    from device.uplink.mqtt import MqttTransport

    assert isinstance(broker, Broker)
    root = work / f"trap-{run.name}"
    data_dir = _fill_device_db(root, run.captures, thumb)
    db = Database(data_dir / "camtrap.db")
    box = Outbox(db)
    [first_meta] = [
        r[0] for r in db.conn.execute("SELECT ref_id FROM outbox WHERE kind='metadata' LIMIT 1")
    ]
    meta = payloads.capture_meta(
        db, DEVICE, item_id_for(ItemKind.METADATA, first_meta), first_meta, False
    )
    meta_bytes = len(protocol.encode(meta))
    emulator = LinkEmulator(broker.port, run.link)
    cert, key = broker.client_cert(DEVICE)
    link = MqttTransport(
        DEVICE,
        host="127.0.0.1",
        port=emulator.port,
        ca_file=broker.ca_file,
        cert_file=cert,
        key_file=key,
    )
    try:
        link.connect(timeout=30)
        drain = Drain(db, link, data_dir=data_dir, device_id=DEVICE, vision=False)
        samples: list[tuple[float, int]] = []
        start = time.monotonic()
        deadline = start + 600
        while time.monotonic() < deadline:
            drain.step()
            p = drain.progress
            thumbs = p.bytes_done // len(thumb)
            samples.append((time.monotonic(), p.bytes_done + (p.items_done - thumbs) * meta_bytes))
            if drain.idle() and not box.depth():
                break
        run.seconds = time.monotonic() - start
        run.wire_bytes = emulator.bytes_total
        run.retries = drain.progress.retries
        run.left = sum(box.depth().values())
        run.payload_bytes = samples[-1][1]
        tenth = next(s for s in samples if s[1] >= run.payload_bytes * 0.1)
        last = next(s for s in samples if s[1] >= run.payload_bytes)
        if last[0] > tenth[0]:
            run.steady_bytes_per_s = (last[1] - tenth[1]) / (last[0] - tenth[0])
    finally:
        link.close()
        emulator.close()
        db.close()
    return run


def main() -> None:
    from cloud_stub.broker import Broker, free_port

    scale = float(os.environ.get("CAMTRAP_BENCH_LINK_SCALE", "1.0"))
    work = Path(tempfile.mkdtemp(prefix="camtrap-bench-link-"))
    broker = Broker(work / "broker", free_port())
    broker.start()
    ingest = subprocess.Popen(
        broker.ingest_command(work / "cloud", log_level="WARNING"),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    # About 70 s each at the link's rate: 250 KB/s carries ~85 thumbnails, 32 KB/s ~11.
    runs = [
        Run("cellular", CELLULAR, max(4, round(85 * scale))),
        Run("satellite", SATELLITE, max(2, round(11 * scale))),
        Run("lan", LAN, max(10, round(400 * scale))),
    ]
    try:
        assert ingest.stdout is not None and "ingest ready" in ingest.stdout.readline()
        thumb = _thumbnail_200k()
        for run in runs:
            _run(run, broker, work, thumb)
            rate = run.link.up.rate_bps
            share = (
                f", {run.steady_bytes_per_s * 8 / rate:.3f} of {rate / 1e3:.0f} kbit/s"
                if rate
                else ""
            )
            print(
                f"# drain over {run.name}: {run.captures} captures, {run.payload_bytes} payload B"
                f" in {run.seconds:.1f} s, steady {run.steady_bytes_per_s / 1e3:.1f} KB/s{share};"
                f" wire {run.wire_bytes} B both ways; retries {run.retries}; left {run.left}",
                flush=True,
            )
    finally:
        ingest.terminate()
        ingest.wait(30)
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    by = {r.name: r for r in runs}
    for name in ("cellular", "satellite"):
        rate = by[name].link.up.rate_bps
        assert rate is not None
        emit(f"drain_link_utilisation_{name}", by[name].steady_bytes_per_s * 8 / rate, "ratio")
    cell = by["cellular"]
    emit("wire_overhead_ratio", cell.wire_bytes / max(1, cell.payload_bytes), "ratio")
    emit("drain_lan_mb_per_s", by["lan"].steady_bytes_per_s / 1e6, "MB/s")


if __name__ == "__main__":
    main()
