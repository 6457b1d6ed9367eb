"""``camtrap-cloud demo``: one trap's life, end to end, with the real programs.

1. Office: a fleet CA, a real mosquitto (TLS, client certificates, per-device ACL) and the
   registry start; ``camtrap-provision`` runs non-interactively against them (enrolment token,
   key made on the trap, CSR signed by the registry, self-test checklist, config written).
2. Field: the broker goes down; ``camtrap simulate`` runs the real agent (mock PIR, synthetic
   camera, the default model) and every capture waits in the outbox.
3. Wi-Fi: mosquitto and ``camtrap-cloud ingest`` start; the default pack, re-signed as a new
   version, is published (retained desired-model message, pack served over HTTPS); the agent
   (``camtrap run``) drains the outbox and installs the update; ``camtrap sync`` then checks
   nothing is left.
4. Learning (cloud_stub/demo_learning.py): the review page starts over the synced events and
   a scripted reviewer labels them through its HTTP interface with what each simulated scene
   really showed; ``camtrap-cloud train`` fits a head on those reviews; it is signed,
   published and installed over the air; the trap captures the next day's events with it and
   syncs them, each observation's ``classifiedBy`` naming the backbone and the head.
5. Cloud: deployments come from the registry's provisioning records; a Camtrap DP package and
   the report plots are written; both databases are compared.

The last line extends the simulate summary with ``delivered=N lost=N duplicates_stored=N``
(delivered = outbox items acknowledged AND found at ingest, files checked by sha256; lost =
captures on the trap missing at ingest; duplicates_stored = rows or files ingest holds more than
once; all three of the first sync), ``model=NAME@VERSION`` (the pack serving after the update),
``head=NAME@VERSION`` (the head trained from the reviews, serving on that model) and
``head_bytes=N`` (what the trap received for it: the files it downloaded and the manifest).

The demo learns the trap's side only from the device's own commands, as an operator would:
``camtrap simulate --json`` (the summary line), ``camtrap status --json`` (what is still
queued) and ``camtrap sync --json`` (every capture and what of it ingest acknowledged). It
never opens the device database, and imports nothing from ``device``.

Every step runs as its own process with a time bound, so the demo ends by itself, on a
terminal or not. Exit status 0 only when nothing was lost, the sync left nothing behind, the
update installed, and the head trained from the reviews served and classified the next day's
events.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cloud_stub.broker import INGEST_USER, Broker, free_port

NEW_VERSION = "1.0.1"
# Where the demo trap stands: Serengeti National Park, Tanzania.
SITE = {
    "location_name": "Serengeti demo site, tree 14",
    "latitude": -2.3333,
    "longitude": 34.8333,
    "coordinate_uncertainty_m": 10,
    "country": "TZA",
    "camera_height_m": 0.6,
    "camera_tilt_deg": -5,
    "camera_heading_deg": 270,
    "habitat": "grassland",
    "bait_use": False,
    "feature_type": "trailGame",
    "setup_by": "camtrap demo",
}


def register(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="provision, capture offline, sync and update, export")
    demo.add_argument("--workdir", type=Path, required=True)
    # Enough reviewed events for a head the trainer accepts (cloud_stub/demo_learning.py).
    demo.add_argument("--triggers", type=int, default=40)
    demo.add_argument("--timeout", type=float, default=300.0, help="bound on each step")
    demo.set_defaults(func=run_demo)


def say(text: str) -> None:
    print(f"demo: {text}" if not text.startswith("demo:") else text, flush=True)


def run_demo(args: argparse.Namespace) -> int:
    work: Path = args.workdir.resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    cloud = work / "cloud"
    ingest_root = cloud / "ingest"
    broker = Broker(work / "broker", free_port())
    ingest_cert, ingest_key = broker.client_cert(INGEST_USER)

    from cloud_stub.models.signing import resign_default_pack

    pack, public_key = resign_default_pack(NEW_VERSION, cloud / "models")

    say("office: fleet CA, broker and registry up; provisioning the trap")
    broker.start()
    try:
        with _process(
            "registry",
            _cloud_cmd(
                "registry",
                "serve",
                "--root",
                str(cloud / "registry"),
                "--ca-dir",
                str(broker.pki_dir),
                "--port",
                "0",
                "--broker-host",
                "127.0.0.1",
                "--broker-port",
                str(broker.port),
            ),
            work / "registry.log",
            "registry ready",
        ) as (_, ready_line):
            registry_url = ready_line.split()[-1]
            config = _provision(work, broker, registry_url, public_key, args.timeout)
    finally:
        broker.stop()
    if config is None:
        return 1
    settings = tomllib.loads(config.read_text())
    device_id = settings["device"]["id"]
    data_dir = Path(settings["storage"]["data_dir"])
    say(f"provisioned {device_id}, deployment {settings['device']['deployment_id']}")

    say(f"field, no network: the broker is down; simulating {args.triggers} PIR triggers")
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
    say(f"captured offline; outbox holds {_unsent(config)} items")

    say("reaching Wi-Fi: mosquitto and the ingest start; a signed model update is published")
    broker.start()
    try:
        with _process(
            "ingest",
            broker.ingest_command(ingest_root, log_level="WARNING"),
            work / "ingest.log",
            "ingest ready",
        ):
            installed = _publish_and_sync(
                args,
                broker,
                ingest_root,
                pack,
                device_id,
                config,
                data_dir,
                (ingest_cert, ingest_key),
            )
            say("camtrap sync:")
            # Progress and messages pass through (stderr); stdout is the JSON outcome.
            sync = subprocess.run(
                [*_camtrap(config), "sync", "--plain", "--json", "--timeout", "60"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                text=True,
                timeout=args.timeout,
            )
    finally:
        broker.stop()

    trap = _sync_outcome(sync.stdout)
    if trap is None:
        say(f"camtrap sync gave no report (exit {sync.returncode})")
        return 1
    left, dead = trap["left"]["items"], trap["undeliverable"]
    say(f"sync: left {left} items; undeliverable {dead}")
    tally = compare(trap["captures"], ingest_root)
    updated = sync.returncode == 0 and installed.endswith(f"@{NEW_VERSION}")

    from cloud_stub.demo_learning import learn, next_day_outcome

    learned = None
    if updated:
        say("learning: the synced events are reviewed, a head is trained, sent and served")
        learned = learn(
            args,
            work,
            broker,
            (ingest_cert, ingest_key),
            device_id,
            settings["device"]["deployment_id"],
            config,
            data_dir,
            stats.get("scenes") or [],
            pack,
        )
    closed = learned is not None and next_day_outcome(learned, ingest_root, installed)
    if learned is not None and learned.failure:
        say(f"the loop did not close: {learned.failure}")
    package, report = _cloud_outputs(cloud, ingest_root)
    line = stats["line"]
    say(f"Camtrap DP package: {package}")
    say(f"report: {report}")
    say("review the captures: make review   (then open the printed URL)")
    head = learned.head if learned is not None and learned.head else "none"
    head_bytes = learned.head_bytes if learned is not None else 0
    say(
        f"{line} delivered={tally['delivered']} lost={tally['lost']}"
        f" duplicates_stored={tally['duplicates_stored']} model={installed or 'none'}"
        f" head={head} head_bytes={head_bytes}"
    )
    ok = tally["lost"] == 0 and updated and closed
    return 0 if ok else 1


def _provision(
    work: Path, broker: Broker, registry_url: str, public_key: Path, timeout: float
) -> Path | None:
    """camtrap-provision, non-interactive, against the registry; returns the config path."""
    root = work / "trap" / "root"
    token = _run(
        _cloud_cmd("registry", "token", "new", "--root", str(work / "cloud" / "registry")), timeout
    ).stdout.strip()
    answers = work / "trap" / "answers.toml"
    answers.parent.mkdir(parents=True, exist_ok=True)
    answers.write_text(_answers_toml(registry_url, broker.ca_file, token, public_key))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "provisioning.cli",
            "--root",
            str(root),
            "--answers",
            str(answers),
            "--non-interactive",
            "--print-commands",
            "--pir-timeout",
            "0",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    (work / "provision.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        say(f"provisioning failed (exit {result.returncode}); see {work / 'provision.log'}")
        sys.stderr.write(result.stdout[-2000:] + result.stderr[-2000:])
        return None
    for line in result.stdout.splitlines():
        if "[PASS]" in line or "[FAIL]" in line or "[SKIP]" in line:
            print(f"  {line.strip()}", flush=True)
    return root / "etc" / "camtrap" / "camtrap.toml"


def _answers_toml(registry_url: str, ca_file: Path, token: str, public_key: Path) -> str:
    lines = ["[deployment]"]
    for key, value in SITE.items():
        lines.append(f"{key} = {json.dumps(value)}")
    lines += [
        "",
        "[registration]",
        'method = "registry"',
        f"url = {json.dumps(registry_url)}",
        f"ca_file = {json.dumps(str(ca_file))}",
        f"token = {json.dumps(token)}",
        "",
        # Simulated hardware, and a laptop's clock and network instead of a Pi's.
        "[config.camera]",
        'backend = "synthetic"',
        "main_size = [1280, 720]",
        "[config.pir]",
        'pin_factory = "mock"',
        "[config.clock]",
        "kernel_status = false",
        "[config.uplink]",
        "network_manager = false",
        'link_type = "wifi"',
        "[config.uplink.mqtt]",
        "connect_timeout_s = 3",
        "[config.ota]",
        f"trusted_keys = [{json.dumps(str(public_key))}]",
        f"ca_file = {json.dumps(str(ca_file))}",
        "",
    ]
    return "\n".join(lines)


def _publish_and_sync(
    args: argparse.Namespace,
    broker: Broker,
    ingest_root: Path,
    pack: Path,
    device_id: str,
    config: Path,
    data_dir: Path,
    admin_cert: tuple[Path, Path],
) -> str:
    """Publish the update, run the agent until the outbox is empty and the update is in;
    returns the serving pack as name@version ('' if none)."""
    from cloud_stub.models.rollout import MqttAdmin, Publisher, publish_pack
    from cloud_stub.models.server import PackServer

    server = PackServer(
        ingest_root / "packs", cert_file=broker.server_cert, key_file=broker.server_key
    ).start()
    try:
        admin = MqttAdmin("127.0.0.1", broker.port, broker.ca_file, *admin_cert)
        with Publisher(admin) as publisher:
            publish_pack(ingest_root, pack, [device_id], publisher, base_url=server.url)
        say(f"published {pack.name} to {device_id} (retained), pack at {server.url}")
        with _process("agent", [*_camtrap(config), "run"], data_dir.parent / "agent.log", None):
            deadline = time.monotonic() + args.timeout
            serving = ""
            while time.monotonic() < deadline:
                serving = _serving_pack(data_dir)
                if serving.endswith(f"@{NEW_VERSION}") and _unsent(config) == 0:
                    break
                time.sleep(0.5)
            say(f"agent drained its outbox; serving model {serving or 'none'}")
            # The fleet page and the report show the newest heartbeat: wait until the cloud
            # holds one sent after the drain and the install, not for a fixed time.
            settle = min(deadline, time.monotonic() + CLOUD_SETTLE_S)
            while time.monotonic() < settle and not _cloud_is_current(
                ingest_root, device_id, NEW_VERSION
            ):
                time.sleep(0.5)
            time.sleep(1.0)  # the install report's ack, after the heartbeat
        return serving
    finally:
        server.stop()


def _serving_pack(data_dir: Path) -> str:
    manifest = data_dir / "models" / "current" / "manifest.json"
    try:
        data = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return ""
    return f"{data['name']}@{data['version']}"


def _cloud_outputs(cloud: Path, ingest_root: Path) -> tuple[Path | str, Path | str]:
    """Deployments from the registry, then the Camtrap DP package and the report plots."""
    from cloud_stub.export.camtrap_dp import export_camtrap_dp
    from cloud_stub.registry.store import copy_deployments_to_ingest
    from cloud_stub.report.report import write_report

    copy_deployments_to_ingest(cloud / "registry", ingest_root)
    outputs: list[Path | str] = []
    for make, out in ((export_camtrap_dp, cloud / "camtrap-dp"), (write_report, cloud / "report")):
        try:
            outputs.append(make(ingest_root, out))
        except Exception as exc:
            outputs.append(f"FAILED: {exc}")
    return outputs[0], outputs[1]


@contextlib.contextmanager
def _process(
    name: str, cmd: list[str], log: Path, ready: str | None
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A background process for the length of a ``with``; SIGTERM at the end."""
    log.write_text("")
    # Append mode for stderr too: stdout is appended to the same file by _copy_out.
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log.open("a"), text=True
    )
    try:
        line = ""
        if ready is not None:
            line = _wait_line(proc, ready, 60)
            if not line:
                raise RuntimeError(f"{name} did not start; see {log}")
        # Nobody reads stdout after the ready line: copy it to the log, or a full pipe
        # (64 KiB of the agent's JSON log lines) blocks the process's next write for good.
        threading.Thread(target=_copy_out, args=(proc, log), daemon=True).start()
        yield proc, line
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def _cloud_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "cloud_stub.cli", "--log-level", "WARNING", *args]


# -- the two sides compared -----------------------------------------------------------------


def compare(trap: dict[str, list[dict[str, Any]]], cloud: Path) -> dict[str, int]:
    """The trap's captures (``camtrap sync --json``'s ``captures``) against ingest's store."""
    from cloud_stub.ingest.store import open_store_db

    ing = open_store_db(cloud, check=False)
    try:
        events = {r[0] for r in ing.execute("SELECT event_id FROM events")}
        media = {
            r[0]: tuple(r)[1:]
            for r in ing.execute(
                "SELECT media_id, file_path, sha256, thumbnail_path, thumbnail_sha256 FROM media"
            )
        }
        frames = {m["media_id"]: m for m in trap["media"]}

        def present(kind: str, ref: str) -> bool:
            if kind == "metadata":
                return ref in events
            row = media.get(ref)
            if row is None:
                return False
            path, sha = (row[0], row[1]) if kind == "media" else (row[2], row[3])
            want = frames[ref]["sha256" if kind == "media" else "thumb_sha256"]
            return bool(path) and sha == want and _sha_file(cloud / "media" / path) == want

        # What the trap knows ingest acknowledged, checked against what ingest holds.
        delivered = sum(
            present("metadata", e["event_id"]) for e in trap["events"] if e["metadata_uploaded"]
        )
        delivered += sum(present("media", m["media_id"]) for m in trap["media"] if m["uploaded"])
        delivered += sum(
            present("thumbnail", m["media_id"]) for m in trap["media"] if m["thumbnail_uploaded"]
        )
        lost = 0
        for frame in trap["media"]:
            if frame["media_id"] not in media:
                lost += 1  # the capture itself never arrived
            elif (
                frame["state"] == "stored"
                and frame["upload_queued"]
                and not present("media", frame["media_id"])
            ):
                lost += 1  # the trap still has the file and meant to send it
        lost += sum(1 for e in trap["events"] if e["event_id"] not in events)
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
        ing.close()


def _sha_file(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


# -- helpers --------------------------------------------------------------------------------


def _camtrap(config: Path) -> list[str]:
    return [sys.executable, "-m", "device.cli", "--config", str(config)]


def _run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
    )


def _copy_out(proc: subprocess.Popen[str], log: Path) -> None:
    assert proc.stdout is not None
    with log.open("a") as out:
        for line in proc.stdout:
            out.write(line)
            out.flush()


def _wait_line(proc: subprocess.Popen[str], text: str, timeout: float) -> str:
    """The first stdout line containing ``text`` ('' on timeout or exit)."""
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
            return ""
        if text in line:
            return line.strip()
    return ""


# How long the demo waits for the cloud to hold the post-sync heartbeat before it goes on.
CLOUD_SETTLE_S = 20.0


def _cloud_is_current(ingest_root: Path, device_id: str, version: str) -> bool:
    """The newest heartbeat the cloud holds says: queue empty, ``version`` serving, synced."""
    from cloud_stub.ingest.opening import database_url
    from cloud_stub.ingest.store import StoreError, database_error, open_store_db, store_path

    if database_url() is None and not store_path(ingest_root).exists():
        return False
    try:
        db = open_store_db(ingest_root, check=False)
    except StoreError:
        return False
    try:
        row = db.execute(
            "SELECT payload FROM telemetry WHERE device_id = ? ORDER BY sent_at DESC LIMIT 1",
            (device_id,),
        ).fetchone()
    except Exception as exc:
        if database_error(ingest_root, exc) is None:
            raise
        return False  # not there yet (no telemetry table): asked again
    finally:
        db.close()
    if row is None:
        return False
    beat = json.loads(row[0])
    queue = beat.get("queue_depth") or {}
    return (
        isinstance(queue, dict)
        and sum(queue.values()) == 0
        and str(beat.get("model_version") or "").endswith(f"@{version}")
        and beat.get("last_sync_at") is not None
    )


def _unsent(config: Path) -> int | None:
    """Items the trap still has to send (``camtrap status --json``); None if it cannot say."""
    status = _run([*_camtrap(config), "status", "--json"], 60)
    try:
        pending = json.loads(status.stdout)["outbox_pending"]
    except (ValueError, KeyError, TypeError):
        return None
    return pending if isinstance(pending, int) else None


def _sync_outcome(stdout: str) -> dict[str, Any] | None:
    """The JSON object ``camtrap sync --json`` prints last, or None."""
    for line in reversed(stdout.strip().splitlines()):
        try:
            outcome = json.loads(line)
        except ValueError:
            continue
        if isinstance(outcome, dict) and "captures" in outcome:
            return outcome
    return None
