"""``camtrap-cloud serve`` (the review page) and ``camtrap-cloud users ...`` (its accounts)."""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import logging
import secrets
import signal
import sys
from pathlib import Path

log = logging.getLogger("camtrap-cloud.review")
DEMO_USER = "demo"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _serve(args: argparse.Namespace) -> int:
    from cloud_stub.ingest.store import guard_store

    return guard_store("camtrap-cloud serve", lambda: _run_serve(args), args.root, args.db)


def _run_serve(args: argparse.Namespace) -> int:
    from werkzeug.serving import make_server

    from cloud_stub.review.app import ReviewConfig, ReviewSetupError, create_app
    from cloud_stub.review.publish import OtaSettings
    from cloud_stub.review.users import UserStore, users_path

    tls = bool(args.tls_cert and args.tls_key)
    if sum([tls, args.behind_proxy, args.insecure_http]) != 1:
        print(
            "camtrap-cloud serve: choose one of --tls-cert/--tls-key (HTTPS here), "
            "--behind-proxy (a TLS reverse proxy in front) or --insecure-http (development)",
            file=sys.stderr,
        )
        return 2
    if args.insecure_http:
        where = "on loopback only" if _loopback(args.host) else f"ON {args.host}, NOT LOOPBACK"
        log.warning(
            "--insecure-http: passwords and session cookies travel unencrypted (%s); "
            "use it for development only",
            where,
        )
    ota = None
    if args.ota_mqtt_host and args.ota_base_url:
        ota = OtaSettings(
            mqtt_host=args.ota_mqtt_host,
            mqtt_port=args.ota_mqtt_port,
            base_url=args.ota_base_url,
            ca_file=args.ota_ca,
            cert_file=args.ota_cert,
            key_file=args.ota_key,
        )
    try:
        app = create_app(
            ReviewConfig(
                root=args.root,
                pack=args.pack,
                threshold=args.review_threshold,
                secure_cookies=not args.insecure_http,
                behind_proxy=args.behind_proxy,
                ota=ota,
                db_url=args.db,
            )
        )
    except ReviewSetupError as exc:
        print(f"camtrap-cloud serve: {exc}", file=sys.stderr)
        return 1
    demo_password = None
    if args.demo_login:
        store = UserStore(users_path(args.root))
        demo_password = secrets.token_urlsafe(9)
        if store.get(DEMO_USER) is None:
            store.add(DEMO_USER, demo_password, "admin")
        else:
            store.set_password(DEMO_USER, demo_password)
    ssl_context = (str(args.tls_cert), str(args.tls_key)) if tls else None
    server = make_server(args.host, args.port, app, threaded=True, ssl_context=ssl_context)
    scheme = "https" if tls else "http"
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"review page: {scheme}://{host}:{server.server_port}/", flush=True)
    if demo_password:
        print(f"demo login: user {DEMO_USER}, password {demo_password}", flush=True)
    print("stop with Ctrl-C", flush=True)

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    # SIGINT too: a shell that started us in the background set it to "ignore".
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise ValueError("the passwords differ")
    return first


def _users(args: argparse.Namespace) -> int:
    import sqlite3

    from cloud_stub.review.users import UserError, UserStore, users_path
    from device.contracts.errors import UserError as CommandError
    from device.contracts.exitcodes import Exit

    path = users_path(args.root)
    if not args.root.is_dir():
        raise CommandError(f"--root {args.root}: no such directory", Exit.NO_INPUT)
    # Only `add` may create the accounts file; the others would make an empty one and say
    # "no such user" about a mistyped root.
    if args.users_command != "add" and not path.is_file():
        raise CommandError(f"no review accounts at {path} (add one first)", Exit.NO_INPUT)
    try:
        store = UserStore(path)
    except sqlite3.Error as exc:
        raise CommandError(
            f"{path}: cannot open the accounts ({exc})", Exit.STORE_UNREADABLE
        ) from exc
    try:
        if args.users_command == "add":
            store.add(args.username, _read_password(args), args.role)
            print(f"added {args.username} ({args.role})")
        elif args.users_command == "passwd":
            store.set_password(args.username, _read_password(args))
            print(f"new password for {args.username}; their sessions have ended")
        elif args.users_command == "role":
            store.set_role(args.username, args.role)
            print(f"{args.username} is now {args.role}; their sessions have ended")
        elif args.users_command == "remove":
            store.remove(args.username)
            print(f"removed {args.username}")
        else:
            for user in store.list():
                print(f"{user.username}\t{user.role}")
    except (UserError, ValueError) as exc:
        print(f"camtrap-cloud users: {exc}", file=sys.stderr)
        return 1
    except sqlite3.Error as exc:
        raise CommandError(f"{path}: {exc}", Exit.STORE_UNREADABLE) from exc
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from cloud_stub.ingest.opening import add_db_argument
    from cloud_stub.review.users import ROLES

    serve = sub.add_parser("serve", help="the review page: captures, review, fleet")
    serve.add_argument("--root", type=Path, required=True, help="the ingest root")
    add_db_argument(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8088)
    serve.add_argument("--tls-cert", type=Path, help="serve HTTPS with this certificate")
    serve.add_argument("--tls-key", type=Path)
    serve.add_argument(
        "--behind-proxy",
        action="store_true",
        help="plain HTTP to a TLS-terminating reverse proxy (trusts its X-Forwarded-*)",
    )
    serve.add_argument(
        "--insecure-http",
        action="store_true",
        help="plain HTTP without Secure cookies: development on loopback only",
    )
    serve.add_argument("--pack", type=Path, help="model pack for the taxon list")
    serve.add_argument(
        "--review-threshold",
        type=float,
        default=0.65,
        help="machine confidence below which an event needs review",
    )
    serve.add_argument(
        "--demo-login",
        action="store_true",
        help=f"(re)create user {DEMO_USER!r} (admin) with a fresh password and print it",
    )
    ota = serve.add_argument_group("publishing models from the page (admin, OTA module)")
    ota.add_argument("--ota-mqtt-host", help="broker, as a user that may write down topics")
    ota.add_argument("--ota-mqtt-port", type=int, default=8883)
    ota.add_argument("--ota-ca", type=Path)
    ota.add_argument("--ota-cert", type=Path)
    ota.add_argument("--ota-key", type=Path)
    ota.add_argument("--ota-base-url", help="where devices download packs (a PackServer)")
    serve.set_defaults(func=_serve)

    users = sub.add_parser("users", help="accounts of the review page")
    users.add_argument("--root", type=Path, required=True, help="the ingest root")
    users_sub = users.add_subparsers(dest="users_command", required=True)
    add = users_sub.add_parser("add", help="create an account")
    add.add_argument("username")
    add.add_argument("--role", choices=ROLES, default="viewer")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    passwd = users_sub.add_parser("passwd", help="set a new password")
    passwd.add_argument("username")
    passwd.add_argument("--password-stdin", action="store_true")
    role = users_sub.add_parser("role", help="change an account's role")
    role.add_argument("username")
    role.add_argument("role", choices=ROLES)
    remove = users_sub.add_parser("remove", help="delete an account")
    remove.add_argument("username")
    users_sub.add_parser("list", help="list accounts and roles")
    users.set_defaults(func=_users)
