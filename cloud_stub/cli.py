"""``camtrap-cloud``: the cloud stub's command line (ingest, and the fleet CA)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

from cloud_stub.ingest.opening import add_db_argument
from device.contracts.commandline import (
    OneLineParser,
    add_debug_flag,
    register_optional,
    without_debug_flag,
)
from device.contracts.errors import UserError, guarded
from device.contracts.exitcodes import Exit
from device.contracts.oserrors import user_error_from_os

log = logging.getLogger("camtrap-cloud")

# Parts of the stub that add their own subcommands; each module has ``register(subparsers)``
# adding parsers whose ``func(args) -> int`` runs them.
COMMAND_MODULES = (
    "cloud_stub.export.commands",
    "cloud_stub.handoff.commands",
    "cloud_stub.report.commands",
    "cloud_stub.registry.commands",
    "cloud_stub.models.commands",
    "cloud_stub.review.commands",
    "cloud_stub.training.commands",
    "cloud_stub.demo",
    "cloud_stub.predict.commands",
)


def _ingest(args: argparse.Namespace) -> int:
    from cloud_stub.ingest.store import guard_store

    if args.workers > 1:
        return guard_store("camtrap-cloud ingest", lambda: _run_workers(args), args.root, args.db)
    return guard_store("camtrap-cloud ingest", lambda: _run_ingest(args), args.root, args.db)


def _ingest_usage_error(args: argparse.Namespace) -> str | None:
    """Why these ingest options cannot work together, or None."""
    from cloud_stub.ingest.opening import database_url

    if not args.mqtt_host and not args.pubsub_subscription:
        return "give --mqtt-host and/or --pubsub-subscription"
    if args.share_group is not None and not args.mqtt_host:
        return "--share-group needs --mqtt-host"
    if args.share_group is not None and not _SHARE_GROUP.fullmatch(args.share_group):
        return f"--share-group {args.share_group!r}: use letters, digits, '-' and '_'"
    if args.session_expiry is not None and args.session_expiry < 0:
        return f"--session-expiry {args.session_expiry}: give 0 or more seconds"
    if args.workers < 1:
        return f"--workers {args.workers}: give 1 or more"
    if args.workers > 1 and database_url(args.db) is None:
        # SQLite has one writer: the workers would only queue on its lock.
        return "--workers needs a PostgreSQL store (--db or $CAMTRAP_CLOUD_DB)"
    if args.workers > 1 and args.mqtt_host and args.share_group is None:
        # Without a group every worker would get (and store, then dedup) every message.
        return "--workers with --mqtt-host needs --share-group"
    return None


# MQTT forbids '/', '+' and '#' in a share name; we keep to a portable subset.
_SHARE_GROUP = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _run_ingest(args: argparse.Namespace) -> int:
    from cloud_stub.ingest.core import Ingestor

    problem = _ingest_usage_error(args)
    if problem:
        print(f"camtrap-cloud ingest: {problem}", file=sys.stderr)
        return int(Exit.USAGE)
    from cloud_stub.ingest.predictor import PredictorThread, predictor_from_args

    predict_client = predictor_from_args(args)  # its URL and token are checked before ingest
    ingestor = Ingestor(
        args.root, max_message_bytes=args.max_message_bytes, db_url=args.db, media=args.media
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    sources: list = []
    predicting: PredictorThread | None = None
    try:
        if predict_client is not None:
            predicting = PredictorThread(args.root, args.db, predict_client).start()
        if args.mqtt_host:
            from cloud_stub.ingest.mqtt_source import MqttIngest

            mqtt_source = MqttIngest(
                ingestor,
                host=args.mqtt_host,
                port=args.mqtt_port,
                ca_file=args.ca,
                cert_file=args.cert,
                key_file=args.key,
                client_id=args.client_id,
                share_group=args.share_group,
                session_expiry_s=args.session_expiry,
            )
            mqtt_source.start(timeout=args.connect_timeout)
            sources.append(mqtt_source)
            log.info(
                "ingesting MQTT %s from %s:%s as %s",
                mqtt_source.topic_filter,
                args.mqtt_host,
                args.mqtt_port,
                args.client_id,
            )
        if args.pubsub_subscription:
            from cloud_stub.ingest.pubsub_source import PubSubIngest

            pubsub_source = PubSubIngest(ingestor, args.pubsub_subscription)
            pubsub_source.start()
            sources.append(pubsub_source)
            log.info("ingesting Pub/Sub from %s", args.pubsub_subscription)
        print("ingest ready", flush=True)
        stop.wait()
    except RuntimeError as exc:
        print(f"camtrap-cloud ingest: {exc}", file=sys.stderr)
        return 1
    finally:
        for source in sources:
            source.stop()
        if predicting is not None:
            predicting.stop()
        # The counters are the whole store's (every worker's); "processed" is this worker's.
        summary = {
            "counters": ingestor.store.counters(),
            "processed": sum(source.processed for source in sources),
        }
        print(json.dumps(summary, sort_keys=True), flush=True)
        ingestor.close()
    return 0


# After one worker died, the others have this long to stop cleanly before they are killed.
WORKER_STOP_GRACE_S = 10.0
SUPERVISOR_POLL_S = 1.0


def _run_workers(args: argparse.Namespace) -> int:
    """``--workers N``: N ingest processes (client ids ID-1..ID-N) sharing the stream.

    A small supervisor for one host: it passes SIGTERM/SIGINT on, and when one worker dies on
    its own it stops the others and exits non-zero, so systemd (or whatever started it)
    restarts the lot. docs/scale.md recommends one unit per worker instead.
    """
    import multiprocessing
    from multiprocessing.connection import wait

    problem = _ingest_usage_error(args)
    if problem:
        print(f"camtrap-cloud ingest: {problem}", file=sys.stderr)
        return int(Exit.USAGE)
    # spawn, not fork: each worker starts clean (no inherited locks, threads or handlers).
    context = multiprocessing.get_context("spawn")
    workers = []
    for number in range(1, args.workers + 1):
        worker_args = argparse.Namespace(**vars(args))
        worker_args.workers = 1
        worker_args.client_id = f"{args.client_id}-{number}"
        workers.append(
            context.Process(
                target=_worker_process,
                args=(worker_args, logging.getLogger().level),
                name=worker_args.client_id,
            )
        )
    stopping = threading.Event()

    def forward(signum: int, _frame: object) -> None:
        stopping.set()
        for worker in workers:
            if worker.pid is not None and worker.exitcode is None:
                os.kill(worker.pid, signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, forward)
    for worker in workers:
        worker.start()
    failed: list[str] = []
    kill_at: float | None = None  # once the others were asked to stop because one died
    while any(w.exitcode is None for w in workers):
        # The exit codes are also looked at every second, not only when a sentinel fires:
        # on a fresh CI root a worker's death once went unnoticed by the sentinel wait.
        timeout = SUPERVISOR_POLL_S
        if kill_at is not None:
            timeout = min(timeout, max(0.0, kill_at - time.monotonic()))
        wait([w.sentinel for w in workers if w.exitcode is None], timeout)
        if kill_at is not None and time.monotonic() >= kill_at:
            # A worker that does not stop (stuck on a lock the dead one held) is killed: it
            # acked nothing it had not committed, so the broker redelivers the rest.
            for worker in workers:
                if worker.exitcode is None and worker.pid is not None:
                    print(
                        f"camtrap-cloud ingest: worker {worker.name} did not stop within"
                        f" {WORKER_STOP_GRACE_S:g} s; killed",
                        file=sys.stderr,
                        flush=True,
                    )
                    os.kill(worker.pid, signal.SIGKILL)
            kill_at = None  # killed: the next wait sees them go
        for worker in workers:
            if worker.exitcode not in (None, 0) and worker.name not in failed:
                failed.append(worker.name)
                print(
                    f"camtrap-cloud ingest: worker {worker.name} exited {worker.exitcode}",
                    file=sys.stderr,
                    flush=True,
                )
        if failed and not stopping.is_set():
            forward(signal.SIGTERM, None)
            kill_at = time.monotonic() + WORKER_STOP_GRACE_S
    return int(Exit.SOFTWARE) if failed else 0


def _worker_process(args: argparse.Namespace, log_level: int) -> None:
    """One worker of ``--workers N``, in its own process."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(guarded("camtrap-cloud ingest", lambda _argv: _ingest(args), None))


def _ca(args: argparse.Namespace) -> int:
    from cloud_stub import pki

    try:
        if args.ca_command == "init":
            ca = pki.create_ca(args.dir)
            cert, _ = pki.issue_server_cert(ca, args.dir, tuple(args.host))
            print(f"CA {ca.cert_path}, broker certificate {cert}")
        elif args.ca_command == "sign":
            ca = pki.load_ca(args.dir)
            args.out.write_bytes(pki.sign_csr(ca, args.csr.read_bytes(), args.device_id))
            print(f"signed {args.device_id}: {args.out}")
        elif args.ca_command == "client":
            ca = pki.load_ca(args.dir)
            cert, key = pki.issue_client_cert(ca, args.out_dir, args.client_id)
            print(f"{cert} {key}")
    except OSError as exc:
        error = user_error_from_os(exc)
        if error is None:
            print(f"camtrap-cloud ca: {exc}", file=sys.stderr)
            return 1
        raise UserError(f"ca: {error.message}", error.code) from exc
    except pki.PkiError as exc:
        print(f"camtrap-cloud ca: {exc}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="camtrap-cloud", description=__doc__)
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
    )
    add_debug_flag(parser)
    sub = parser.add_subparsers(dest="command", required=True)

    ingest = sub.add_parser("ingest", help="store what traps upload and acknowledge it")
    ingest.add_argument("--root", type=Path, required=True, help="data dir (SQLite + media)")
    ingest.add_argument("--mqtt-host")
    ingest.add_argument("--mqtt-port", type=int, default=8883)
    ingest.add_argument("--ca", type=Path, help="CA that signed the broker's certificate")
    ingest.add_argument("--cert", type=Path, help="the ingest user's client certificate")
    ingest.add_argument("--key", type=Path)
    ingest.add_argument(
        "--client-id",
        default="camtrap-ingest",
        help="MQTT client id; unique per worker (--workers N adds -1..-N)",
    )
    ingest.add_argument(
        "--share-group",
        metavar="G",
        help="split the stream with the other workers of group G ($share/G/camtrap/+/up/#)",
    )
    ingest.add_argument(
        "--session-expiry",
        type=int,
        metavar="S",
        help="seconds the broker keeps a worker's session while it is away "
        "(default a week; 120 in a share group, where an absent worker still gets its turn)",
    )
    ingest.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="start N worker processes here (PostgreSQL only); one unit per worker is better",
    )
    ingest.add_argument("--connect-timeout", type=float, default=15.0)
    ingest.add_argument("--pubsub-subscription", help="projects/<p>/subscriptions/<s>")
    ingest.add_argument(
        "--media",
        metavar="WHERE",
        help="where received files go: 'local' (<root>/media, the default) or "
        "gs://bucket[/prefix]; recorded in the store, so later workers and readers follow it",
    )
    ingest.add_argument("--max-message-bytes", type=int, default=16 * 1024 * 1024)
    ingest.add_argument(
        "--predict-url",
        help="send media of events that arrive unclassified (vision off) to this Vertex "
        "AI-format endpoint, e.g. http://HOST:8501/v1/projects/P/locations/L/endpoints/E:predict",
    )
    ingest.add_argument("--predict-token-file", type=Path, help="its bearer token, mode 0600")
    ingest.add_argument("--predict-country", help="ISO 3166-1 alpha-3 code: the geofence")
    add_db_argument(ingest)
    ingest.set_defaults(func=_ingest)

    ca = sub.add_parser("ca", help="the fleet certificate authority")
    ca_sub = ca.add_subparsers(dest="ca_command", required=True)
    init = ca_sub.add_parser("init", help="create the CA and a broker certificate")
    init.add_argument("dir", type=Path)
    init.add_argument("--host", action="append", default=None, help="broker name or IP")
    sign = ca_sub.add_parser("sign", help="sign a device CSR (CN must be the device id)")
    sign.add_argument("dir", type=Path)
    sign.add_argument("csr", type=Path)
    sign.add_argument("device_id")
    sign.add_argument("out", type=Path)
    client = ca_sub.add_parser("client", help="key and certificate for a client (e.g. ingest)")
    client.add_argument("dir", type=Path)
    client.add_argument("client_id")
    client.add_argument("out_dir", type=Path)
    ca.set_defaults(func=_ca)

    register_optional(sub, COMMAND_MODULES)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The console script: every error is one line on stderr and an exit code (docs/agent.md,
    "Exit codes"); ``--debug`` or ``CAMTRAP_DEBUG=1`` adds the traceback."""
    return guarded("camtrap-cloud", _main, argv)


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(without_debug_flag(argv))
    if getattr(args, "host", None) is None and getattr(args, "ca_command", None) == "init":
        args.host = ["localhost", "127.0.0.1"]
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.func(args)
    except OSError as exc:
        # A file or directory given on the command line that cannot be read or written.
        error = user_error_from_os(exc)
        if error is None:
            raise
        raise error from exc


if __name__ == "__main__":
    sys.exit(main())
