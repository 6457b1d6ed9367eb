"""``camtrap-cloud registry``: serve the registration API, mint tokens, list deployments."""

from __future__ import annotations

import argparse
import csv
import json
import signal
import sys
import threading
from pathlib import Path

from cloud_stub import pki

# Tokens are minted for a field season's traps, not by the million.
MAX_TOKENS = 10_000


def register(sub: argparse._SubParsersAction) -> None:
    registry = sub.add_parser("registry", help="device registration API and its records")
    registry_sub = registry.add_subparsers(dest="registry_command", required=True)

    serve = registry_sub.add_parser("serve", help="serve the registration API over HTTPS")
    serve.add_argument("--root", type=Path, required=True, help="registry data dir (SQLite)")
    serve.add_argument("--ca-dir", type=Path, required=True, help="fleet CA (camtrap-cloud ca)")
    serve.add_argument("--listen", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8443, help="0 picks a free port")
    serve.add_argument(
        "--name",
        action="append",
        default=None,
        help="host name or IP devices use for the registry (its certificate's names)",
    )
    serve.add_argument("--tls-cert", type=Path, help="server certificate (default: CA-issued)")
    serve.add_argument("--tls-key", type=Path)
    serve.add_argument("--broker-host", required=True, help="broker address given to devices")
    serve.add_argument("--broker-port", type=int, default=8883)
    serve.set_defaults(func=_serve)

    token = registry_sub.add_parser("token", help="one-time enrolment tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    new = token_sub.add_parser("new", help="mint tokens, one per line on stdout")
    new.add_argument("--root", type=Path, required=True)
    new.add_argument("--count", type=int, default=1)
    new.set_defaults(func=_token_new)

    deployments = registry_sub.add_parser("deployments", help="list Camtrap DP deployments")
    deployments.add_argument("--root", type=Path, required=True)
    deployments.add_argument("--format", choices=("json", "csv"), default="json")
    deployments.set_defaults(func=_deployments)

    push = registry_sub.add_parser(
        "push-deployments", help="copy deployment records into an ingest store (for export)"
    )
    push.add_argument("--root", type=Path, required=True)
    push.add_argument("--ingest-root", type=Path, required=True)
    push.set_defaults(func=_push_deployments)


def _serve(args: argparse.Namespace) -> int:
    from cloud_stub.registry.server import BrokerInfo, build_server

    names = tuple(args.name or ["localhost", "127.0.0.1"])
    try:
        server = build_server(
            args.root,
            args.ca_dir,
            BrokerInfo(args.broker_host, args.broker_port),
            host=args.listen,
            port=args.port,
            names=names,
            cert=args.tls_cert,
            key=args.tls_key,
        )
    except (OSError, pki.PkiError) as exc:
        print(f"camtrap-cloud registry: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    print(f"registry ready https://{names[0]}:{server.port}", flush=True)
    stop.wait()
    server.stop()
    return 0


def _token_new(args: argparse.Namespace) -> int:
    from cloud_stub.registry.store import RegistryStore

    if not 1 <= args.count <= MAX_TOKENS:
        print(
            f"camtrap-cloud registry token new: --count must be 1 to {MAX_TOKENS}",
            file=sys.stderr,
        )
        return 2
    for token in RegistryStore(args.root).new_tokens(args.count):
        print(token)
    return 0


def _deployments(args: argparse.Namespace) -> int:
    from cloud_stub.registry.store import DB_NAME, DEPLOYMENT_FIELDS, EXTRA_FIELDS, RegistryStore
    from device.contracts.errors import UserError
    from device.contracts.exitcodes import Exit

    # Listing must not create an empty registry where the operator mistyped the path.
    if not (args.root / DB_NAME).is_file():
        raise UserError(f"no registry at {args.root / DB_NAME}", Exit.NO_INPUT)
    rows = RegistryStore(args.root).deployments()
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    else:
        writer = csv.DictWriter(
            sys.stdout, fieldnames=[*DEPLOYMENT_FIELDS, *EXTRA_FIELDS, "device_id"]
        )
        writer.writeheader()
        writer.writerows(rows)
    return 0


def _push_deployments(args: argparse.Namespace) -> int:
    from cloud_stub.ingest.store import guard_store
    from cloud_stub.registry.store import DB_NAME
    from device.contracts.errors import UserError
    from device.contracts.exitcodes import Exit

    if not (args.root / DB_NAME).is_file():
        raise UserError(f"no registry at {args.root / DB_NAME}", Exit.NO_INPUT)
    return guard_store(
        "camtrap-cloud registry push-deployments", lambda: _push(args), args.ingest_root
    )


def _push(args: argparse.Namespace) -> int:
    from cloud_stub.registry.store import copy_deployments_to_ingest

    count = copy_deployments_to_ingest(args.root, args.ingest_root)
    print(f"{count} deployment record(s) copied to {args.ingest_root}")
    return 0
