"""``camtrap-cloud keys ...`` and ``camtrap-cloud model ...`` (docs/ota.md)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any


def _keys(args: argparse.Namespace) -> int:
    from cloud_stub.models.keys import SigningKeyError, new_keypair

    try:
        key_path, pub_path = new_keypair(args.dir, args.name)
    except SigningKeyError as exc:
        print(f"camtrap-cloud keys: {exc}", file=sys.stderr)
        return 1
    from device.contracts.signing import key_id, load_public_key

    print(f"private key {key_path} (keep it off the devices and out of git)")
    print(f"public key  {pub_path} (key id {key_id(load_public_key(pub_path))})")
    return 0


def _sign(args: argparse.Namespace) -> int:
    from cloud_stub.models.keys import SigningKeyError
    from cloud_stub.models.signing import sign_pack
    from device.contracts.manifest import PackError

    try:
        signed = sign_pack(
            args.pack,
            args.key,
            version=args.version,
            expires_in=timedelta(days=args.expires_days) if args.expires_days else None,
        )
    except (SigningKeyError, PackError, ValueError, OSError) as exc:
        print(f"camtrap-cloud model sign: {exc}", file=sys.stderr)
        return 1
    print(
        f"signed {signed['name']}@{signed['version']} with key {signed['signature']['key_id']},"
        f" expires {signed['expires']}"
    )
    return 0


def _admin(args: argparse.Namespace) -> Any:
    from cloud_stub.models.rollout import MqttAdmin

    return MqttAdmin(
        host=args.mqtt_host,
        port=args.mqtt_port,
        ca_file=args.ca,
        cert_file=args.cert,
        key_file=args.key,
        client_id=args.client_id,
    )


def _publish(args: argparse.Namespace) -> int:
    from cloud_stub.models import rollout as ro
    from cloud_stub.models.server import PackServer

    server = None
    try:
        targets = list(args.to or []) or ro.group_members(args.root, args.group)
        base_url = args.base_url
        if args.serve:
            host, _, port = args.serve.rpartition(":")
            server = PackServer(args.root / "packs", host or "127.0.0.1", int(port)).start()
            base_url = server.url
        if not base_url:
            print("camtrap-cloud model publish: give --base-url or --serve", file=sys.stderr)
            return 2
        (args.root / "packs").mkdir(parents=True, exist_ok=True)
        with ro.Publisher(_admin(args)) as publisher:
            record = ro.publish_pack(
                args.root,
                args.pack,
                targets,
                publisher,
                base_url=base_url,
                canary=args.canary,
                wait_timeout=args.wait_timeout,
                on_progress=lambda line: print(line, flush=True),
                on_warning=lambda line: print(
                    f"camtrap-cloud model publish: warning: {line}", file=sys.stderr, flush=True
                ),
                db_url=args.db,
            )
        if server is not None and record["phase"] == "published":
            # Keep serving until every device finished (or the timeout), then stop.
            ro.wait_for(args.root, record, targets, len(targets), args.wait_timeout, url=args.db)
    except (ro.RolloutError, OSError, ValueError) as exc:
        print(f"camtrap-cloud model publish: {exc}", file=sys.stderr)
        return 1
    finally:
        if server is not None:
            server.stop()
    _print_status(ro.status(args.root, record["id"], url=args.db), as_json=False)
    return 0 if record["phase"] == "published" else 1


def _print_status(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        print("no rollouts")
        return
    print(f"{'rollout':<24} {'pack':<36} {'device':<20} {'outcome':<14} detail")
    for row in rows:
        device = row["device"] + (" (canary)" if row["canary"] else "")
        print(
            f"{row['rollout']:<24} {row['pack']:<36} {device:<20} {row['outcome']:<14} "
            f"{row.get('detail') or row.get('last_code') or ''}"[:200]
        )


def _status(args: argparse.Namespace) -> int:
    from cloud_stub.ingest.store import guard_store
    from cloud_stub.models.rollout import status
    from device.contracts.errors import UserError
    from device.contracts.exitcodes import Exit

    if not args.root.is_dir():
        raise UserError(f"{args.root}: no such directory (the stub's data dir)", Exit.NO_INPUT)

    def show() -> int:
        _print_status(status(args.root, args.rollout, url=args.db), args.json)
        return 0

    return guard_store("camtrap-cloud model status", show, args.root, args.db)


def _serve(args: argparse.Namespace) -> int:
    import threading

    from cloud_stub.models.server import PackServer

    (args.root / "packs").mkdir(parents=True, exist_ok=True)
    server = PackServer(
        args.root / "packs", args.host, args.port, cert_file=args.cert, key_file=args.key
    ).start()
    print(f"serving {args.root / 'packs'} at {server.url}/packs/", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def _group(args: argparse.Namespace) -> int:
    from cloud_stub.models.rollout import set_group

    set_group(args.root, args.name, args.devices)
    print(f"group {args.name}: {', '.join(args.devices)}")
    return 0


def _resign_default(args: argparse.Namespace) -> int:
    from cloud_stub.models.signing import resign_default_pack
    from device.contracts.errors import UserError
    from device.contracts.exitcodes import Exit
    from device.contracts.versions import parse_version

    try:
        parse_version(args.version)
    except ValueError as exc:
        raise UserError(str(exc), Exit.USAGE) from exc
    pack, pub = resign_default_pack(args.version, args.out_dir)
    print(f"pack {pack}\npublic key {pub}")
    return 0


def _mqtt_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mqtt-host", default="127.0.0.1")
    parser.add_argument("--mqtt-port", type=int, default=8883)
    parser.add_argument("--ca", type=Path, help="CA that signed the broker's certificate")
    parser.add_argument("--cert", type=Path, help="client certificate allowed to write down/#")
    parser.add_argument("--key", type=Path)
    parser.add_argument("--client-id", default="camtrap-models")


def register(sub: Any) -> None:
    from cloud_stub.ingest.opening import add_db_argument

    keys = sub.add_parser("keys", help="Ed25519 keys that sign model packs")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    new = keys_sub.add_parser("new", help="make a key pair (NAME.key 0600, NAME.pub)")
    new.add_argument("dir", type=Path)
    new.add_argument("--name", default="camtrap-models")
    new.set_defaults(func=_keys)

    model = sub.add_parser("model", help="sign, serve, publish model packs; rollout status")
    model_sub = model.add_subparsers(dest="model_command", required=True)

    sign = model_sub.add_parser("sign", help="sign a pack's manifest (ed25519)")
    sign.add_argument("pack", type=Path)
    sign.add_argument("--key", type=Path, required=True, help="private key from 'keys new'")
    sign.add_argument("--version", help="set this version before signing")
    sign.add_argument(
        "--expires-days", type=float, help="set expires this many days ahead (required if unset)"
    )
    sign.set_defaults(func=_sign)

    publish = model_sub.add_parser("publish", help="offer a signed pack to devices")
    publish.add_argument("pack", type=Path)
    target = publish.add_mutually_exclusive_group(required=True)
    target.add_argument("--to", action="append", metavar="DEVICE_ID")
    target.add_argument("--group", metavar="NAME")
    publish.add_argument("--canary", type=int, default=0, metavar="N")
    publish.add_argument("--root", type=Path, required=True, help="the stub's data dir")
    add_db_argument(publish)
    publish.add_argument("--base-url", help="where 'model serve' serves ROOT/packs")
    publish.add_argument("--serve", metavar="HOST:PORT", help="serve packs from this process")
    publish.add_argument("--wait-timeout", type=float, default=600.0)
    _mqtt_args(publish)
    publish.set_defaults(func=_publish)

    stat = model_sub.add_parser("status", help="rollouts and each device's outcome")
    stat.add_argument("--root", type=Path, required=True)
    add_db_argument(stat)
    stat.add_argument("--rollout")
    stat.add_argument("--json", action="store_true")
    stat.set_defaults(func=_status)

    serve = model_sub.add_parser("serve", help="serve ROOT/packs over HTTP(S) with Range")
    serve.add_argument("--root", type=Path, required=True)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8090)
    serve.add_argument("--cert", type=Path, help="TLS certificate (HTTPS)")
    serve.add_argument("--key", type=Path)
    serve.set_defaults(func=_serve)

    group = model_sub.add_parser("group", help="define a named group of devices")
    group.add_argument("name")
    group.add_argument("devices", nargs="+")
    group.add_argument("--root", type=Path, required=True)
    group.set_defaults(func=_group)

    resign = model_sub.add_parser(
        "resign-default", help="the bundled pack as VERSION, signed with a fresh key (demo)"
    )
    resign.add_argument("version")
    resign.add_argument("out_dir", type=Path)
    resign.set_defaults(func=_resign_default)
