"""``camtrap-cloud predict``: serve the trap's classifier as a Vertex AI-format endpoint.

Exit codes at start (docs/scale.md, "Prediction endpoint"): 2 a bad argument, pack or token
file, or no token file off loopback; 66 the token file is missing; 69 the port cannot be bound.
"""

from __future__ import annotations

import argparse
import errno
import signal
import sys
import threading
from pathlib import Path

from device.contracts.errors import UserError
from device.contracts.exitcodes import Exit
from device.contracts.pack import DEFAULT_PACK_DIR

PROG = "predict"


def register(sub: argparse._SubParsersAction) -> None:
    from cloud_stub.predict.server import Limits

    predict = sub.add_parser(
        "predict", help="serve the trap's classifier as a Vertex AI-format prediction endpoint"
    )
    predict.add_argument("--host", default="127.0.0.1", help="address to listen on")
    # 8501: TensorFlow Serving's REST port (8085, the Pub/Sub emulator's, would collide).
    predict.add_argument("--port", type=int, default=8501, help="0 picks a free port")
    predict.add_argument("--pack", type=Path, default=DEFAULT_PACK_DIR, help="model pack")
    predict.add_argument("--token-file", type=Path, help="bearer token, mode 0600")
    predict.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="no token (loopback addresses only: the demo)",
    )
    predict.add_argument("--max-instances", type=int, default=Limits.max_instances)
    predict.add_argument("--max-request-bytes", type=int, default=Limits.max_request_bytes)
    predict.set_defaults(func=_predict)


def _predict(args: argparse.Namespace) -> int:
    """Serve until SIGTERM; a problem at start is one line ``camtrap-cloud predict: <reason>``
    and its exit code."""
    try:
        return _serve(args)
    except UserError as exc:
        print(f"camtrap-cloud {PROG}: {exc.message}", file=sys.stderr)
        return exc.code


def _serve(args: argparse.Namespace) -> int:
    from cloud_stub.predict.auth import is_loopback, read_token
    from cloud_stub.predict.engine import EngineError, PredictEngine
    from cloud_stub.predict.server import Limits, PredictServer

    if args.max_instances < 1 or args.max_request_bytes < 1:
        raise UserError("--max-instances and --max-request-bytes must be 1 or more")
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port {args.port}: must be 0 to 65535")
    if args.token_file is not None and args.insecure_no_auth:
        raise UserError("give --token-file or --insecure-no-auth, not both")
    if args.token_file is None and not args.insecure_no_auth:
        raise UserError("needs --token-file (or --insecure-no-auth on loopback)")
    if args.insecure_no_auth and not is_loopback(args.host):
        raise UserError(
            f"--host {args.host}: --insecure-no-auth serves only a loopback address "
            "(127.0.0.1, ::1, localhost); give --token-file"
        )
    token = None if args.token_file is None else read_token(args.token_file)
    try:
        engine = PredictEngine(args.pack)
    except EngineError as exc:
        raise UserError(str(exc)) from exc
    try:
        server = PredictServer(
            engine, args.host, args.port, token, Limits(args.max_instances, args.max_request_bytes)
        )
    except OSError as exc:
        engine.close()
        reason = "address in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
        raise UserError(f"cannot listen on {args.host}:{args.port} ({reason})",
                        Exit.UNAVAILABLE) from exc  # fmt: skip
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    print(
        f"predict ready http://{args.host}:{server.port} model {engine.deployed_model_id}",
        flush=True,
    )
    stop.wait()
    server.stop()
    engine.close()
    return 0
