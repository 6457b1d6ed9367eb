"""``camtrap-cloud``: the cloud stub's command line (ingest, and the fleet CA)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path

from device.contracts.commandline import (
    OneLineParser,
    add_debug_flag,
    register_optional,
    without_debug_flag,
)
from device.contracts.errors import UserError, guarded
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

    return guard_store("camtrap-cloud ingest", lambda: _run_ingest(args), args.root)


def _run_ingest(args: argparse.Namespace) -> int:
    from cloud_stub.ingest.core import Ingestor

    if not args.mqtt_host and not args.pubsub_subscription:
        print(
            "camtrap-cloud ingest: give --mqtt-host and/or --pubsub-subscription", file=sys.stderr
        )
        return 2
    ingestor = Ingestor(args.root, max_message_bytes=args.max_message_bytes)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    sources: list = []
    try:
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
            )
            mqtt_source.start(timeout=args.connect_timeout)
            sources.append(mqtt_source)
            log.info("ingesting MQTT from %s:%s", args.mqtt_host, args.mqtt_port)
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
        print(json.dumps({"counters": ingestor.store.counters()}, sort_keys=True), flush=True)
        ingestor.close()
    return 0


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
    ingest.add_argument("--client-id", default="camtrap-ingest")
    ingest.add_argument("--connect-timeout", type=float, default=15.0)
    ingest.add_argument("--pubsub-subscription", help="projects/<p>/subscriptions/<s>")
    ingest.add_argument("--max-message-bytes", type=int, default=16 * 1024 * 1024)
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
