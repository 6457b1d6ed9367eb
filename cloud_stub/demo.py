"""``camtrap-cloud demo``: a trap captures offline, then reaches "Wi-Fi" and syncs to the cloud.

1. A fleet CA, a per-device certificate, a broker certificate and the per-device ACL are made
   (``cloud_stub.broker``); the broker is configured but NOT started: the trap is offline.
2. ``camtrap simulate`` runs the real agent (mock PIR, synthetic camera, the real model); its
   uplink cannot reach the broker, so every capture waits in the outbox.
3. "Wi-Fi": mosquitto (TLS, client certificates, ACL) and ``camtrap-cloud ingest`` start, and
   ``camtrap sync`` drains the outbox.
4. Both databases are compared, and the simulate summary line gains
   ``delivered=N lost=N duplicates_stored=N``: delivered = outbox items acknowledged AND found
   at ingest (files checked by sha256); lost = captures on the trap missing at ingest (a row,
   or a file the trap still keeps and meant to send); duplicates_stored = rows or files ingest
   holds more than once.

Every step runs as its own process with a time bound, so the demo ends by itself, on a
terminal or not. Exit status 0 only when nothing was lost and the sync left nothing behind.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from cloud_stub.broker import INGEST_USER, Broker, free_port

DEVICE = "demo-trap"
DEPLOYMENT = "demo-deployment"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    demo = sub.add_parser("demo", help="offline trap, then Wi-Fi: sync through a real broker")
    demo.add_argument("--workdir", type=Path, required=True)
    demo.add_argument("--triggers", type=int, default=5)
    demo.add_argument("--timeout", type=float, default=300.0, help="bound on each step")
    demo.set_defaults(func=run_demo)


def say(text: str) -> None:
    print(f"demo: {text}" if not text.startswith("demo:") else text, flush=True)


def run_demo(args: argparse.Namespace) -> int:
    work: Path = args.workdir.resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    broker = Broker(work / "broker", free_port())
    device_cert, device_key = broker.client_cert(DEVICE)
    ingest_cert, ingest_key = broker.client_cert(INGEST_USER)
    data_dir = work / "trap" / "data"
    config = _device_config(work, broker, device_cert, device_key, data_dir)
    say(f"fleet CA and per-device certificate for {DEVICE}; broker on port {broker.port} is DOWN")

    say(f"trap offline: simulating {args.triggers} PIR triggers")
    sim = _run(
        [
            *_camtrap(config),
            "simulate",
            "--triggers",
            str(args.triggers),
            "--json",
            "--data-dir",
            str(data_dir),
        ],
        args.timeout,
    )
    if sim.returncode != 0:
        sys.stderr.write(sim.stderr[-3000:])
        return 1
    stats = json.loads(sim.stdout.strip().splitlines()[-1])
    say(f"captured offline; outbox holds {_unsent(data_dir)} items")

    ingest: subprocess.Popen[str] | None = None
    try:
        say("reaching Wi-Fi: starting mosquitto (TLS, client certs, ACL) and the ingest")
        broker.start()
        ingest = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cloud_stub.cli",
                "--log-level",
                "WARNING",
                "ingest",
                "--root",
                str(work / "cloud" / "ingest"),
                "--mqtt-host",
                "127.0.0.1",
                "--mqtt-port",
                str(broker.port),
                "--ca",
                str(broker.ca_file),
                "--cert",
                str(ingest_cert),
                "--key",
                str(ingest_key),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=(work / "ingest.log").open("w"),
            text=True,
        )
        if not _wait_line(ingest, "ingest ready", 30):
            say("ingest did not start; see ingest.log")
            return 1
        say("camtrap sync:")
        sync = subprocess.run(
            [*_camtrap(config), "sync", "--plain", "--timeout", str(args.timeout)],
            stdin=subprocess.DEVNULL,
            text=True,
            timeout=args.timeout + 60,
        )
    finally:
        if ingest is not None:
            ingest.send_signal(signal.SIGTERM)
            try:
                ingest.wait(30)
            except subprocess.TimeoutExpired:
                ingest.kill()
        broker.stop()

    tally = compare(data_dir / "camtrap.db", work / "cloud" / "ingest")
    line = _simulate_line(stats)
    say(
        f"{line} delivered={tally['delivered']} lost={tally['lost']}"
        f" duplicates_stored={tally['duplicates_stored']}"
    )
    return 0 if tally["lost"] == 0 and sync.returncode == 0 else 1


# -- the two sides compared -----------------------------------------------------------------


def compare(device_db: Path, cloud: Path) -> dict[str, int]:
    dev = sqlite3.connect(f"file:{device_db}?mode=ro", uri=True)
    ing = sqlite3.connect(f"file:{cloud / 'ingest.sqlite'}?mode=ro", uri=True)
    try:
        events = {r[0] for r in ing.execute("SELECT event_id FROM events")}
        media = {
            r[0]: r[1:]
            for r in ing.execute(
                "SELECT media_id, file_path, sha256, thumbnail_path, thumbnail_sha256 FROM media"
            )
        }

        def present(kind: str, ref: str) -> bool:
            if kind == "metadata":
                return ref in events
            row = media.get(ref)
            if row is None:
                return False
            path, sha = (row[0], row[1]) if kind == "media" else (row[2], row[3])
            want = dev.execute(
                "SELECT sha256 FROM media WHERE media_id=?"
                if kind == "media"
                else "SELECT thumb_sha256 FROM media WHERE media_id=?",
                (ref,),
            ).fetchone()[0]
            return bool(path) and sha == want and _sha_file(cloud / "media" / path) == want

        done = dev.execute("SELECT kind, ref_id FROM outbox WHERE state='done'").fetchall()
        delivered = sum(present(k, r) for k, r in done)
        lost = 0
        for media_id, state, has_item in dev.execute(
            "SELECT m.media_id, m.state, o.item_id IS NOT NULL FROM media m"
            " LEFT JOIN outbox o ON o.item_id = 'media:' || m.media_id"
        ):
            if media_id not in media:
                lost += 1  # the capture itself never arrived
            elif state == "stored" and has_item and not present("media", media_id):
                lost += 1  # the trap still has the file and meant to send it
        lost += sum(1 for (e,) in dev.execute("SELECT event_id FROM events") if e not in events)
        duplicates = sum(
            ing.execute(f"SELECT count(*) - count(DISTINCT {key}) FROM {table}").fetchone()[0]
            for table, key in (
                ("events", "event_id"),
                ("media", "media_id"),
                ("observations", "observation_id"),
            )
        )
        referenced = {p for row in media.values() for p in (row[0], row[2]) if p}
        on_disk = [p for p in (cloud / "media").rglob("*") if p.is_file()]
        duplicates += max(0, len(on_disk) - len(referenced))
        return {"delivered": delivered, "lost": lost, "duplicates_stored": duplicates}
    finally:
        dev.close()
        ing.close()


def _sha_file(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


# -- helpers --------------------------------------------------------------------------------


def _device_config(work: Path, broker: Broker, cert: Path, key: Path, data_dir: Path) -> Path:
    data_dir.mkdir(parents=True)
    text = f"""\
[device]
id = "{DEVICE}"
deployment_id = "{DEPLOYMENT}"

[storage]
data_dir = "{data_dir}"
fallback_dir = "{work / "trap" / "fallback"}"

[uplink]
transport = "mqtt"
network_manager = false
link_type = "wifi"

[uplink.mqtt]
host = "127.0.0.1"
port = {broker.port}
ca_file = "{broker.ca_file}"
cert_file = "{cert}"
key_file = "{key}"
connect_timeout_s = 3

[clock]
timesync_flag = "{work / "trap" / "no-timesync"}"
rtc_device = "{work / "trap" / "no-rtc"}"
"""
    path = work / "trap" / "camtrap.toml"
    path.write_text(text)
    return path


def _camtrap(config: Path) -> list[str]:
    return [sys.executable, "-m", "device.cli", "--config", str(config)]


def _run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
    )


def _wait_line(proc: subprocess.Popen[str], text: str, timeout: float) -> bool:
    import selectors

    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
            break
        line = proc.stdout.readline()
        if not line:
            return False
        if text in line:
            return True
    return False


def _unsent(data_dir: Path) -> int:
    conn = sqlite3.connect(f"file:{data_dir / 'camtrap.db'}?mode=ro", uri=True)
    try:
        return conn.execute(
            "SELECT count(*) FROM outbox WHERE state IN ('pending', 'inflight')"
        ).fetchone()[0]
    finally:
        conn.close()


def _simulate_line(stats: dict[str, Any]) -> str:
    from device.simulate import SimulationResult

    return SimulationResult(
        data_dir=Path(stats["data_dir"]),
        triggers_sent=stats["triggers_sent"],
        triggers_seen=stats["triggers_seen"],
        stats=stats,
    ).line()
