"""The HTTP side of the endpoint: routing, the bearer token, the size limits, one log line per
request; classification is ``PredictEngine``'s.

Status codes: 200 at least one instance answered (a bad one carries its own error in its slot);
400 a malformed request, too many instances, a bad parameter, or no instance answerable; 401 no
or a wrong token; 404 another path; 405 another method; 411 no Content-Length; 413 a body over
the limit.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cloud_stub.predict.answer import error_slot, prediction
from cloud_stub.predict.auth import token_matches
from cloud_stub.predict.engine import PredictEngine
from cloud_stub.predict.request import BadInstance, BadRequest, parse_request

__all__ = ["PREDICT_PATH", "Limits", "PredictServer"]

log = logging.getLogger("camtrap-cloud.predict")

PREDICT_PATH = re.compile(r"^/v1/projects/[^/]+/locations/[^/]+/endpoints/[^/:]+:predict$")
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    411: "LENGTH_REQUIRED",
    413: "PAYLOAD_TOO_LARGE",
}
# A client that stops sending mid-body frees its thread after this long.
READ_TIMEOUT_S = 30.0
# An oversize body up to this many times --max-request-bytes is read (and dropped) before the 413.
DRAIN_FACTOR = 4
DRAIN_CHUNK = 1 << 16


@dataclass(frozen=True)
class Limits:
    max_instances: int = 32
    max_request_bytes: int = 32 * 1024 * 1024


class PredictServer:
    """``engine`` served on ``host:port`` (0 picks a free port); ``token`` None = no auth (the
    caller has checked the host is loopback)."""

    def __init__(
        self, engine: PredictEngine, host: str, port: int, token: str | None, limits: Limits
    ) -> None:
        self.engine = engine
        self.token = token
        self.limits = limits
        handler = type("Handler", (_Handler,), {"endpoint": self})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="predict-http", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, let the request being answered finish, close the socket."""
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join()

    def answer(self, body: bytes) -> tuple[int, dict[str, Any]]:
        """The status and JSON answer to a predict request's body."""
        try:
            request = parse_request(body, self.limits.max_instances)
            self.engine.check_country(request.parameters.country)
        except (BadRequest, ValueError) as exc:
            return 400, _error(400, str(exc))
        slots: list[dict[str, Any]] = []
        answered = 0
        for index, item in enumerate(request.instances):
            if isinstance(item, BadInstance):
                slots.append(error_slot(item.message))
                continue
            try:
                classified = self.engine.classify(item, request.parameters.country)
            except ValueError as exc:  # ImageError is a ValueError: an undecodable JPEG
                slots.append(error_slot(f"instance {index}: {exc}"))
                continue
            slots.append(prediction(classified, request.parameters))
            answered += 1
        out = {"predictions": slots, "deployedModelId": self.engine.deployed_model_id}
        if answered == 0:
            reasons = "; ".join(s["error"]["message"] for s in slots)
            return 400, {**_error(400, f"no instance could be classified: {reasons}"), **out}
        return 200, out


def _error(code: int, message: str) -> dict[str, Any]:
    return {
        "error": {"code": code, "status": STATUS_NAMES.get(code, "UNKNOWN"), "message": message}
    }


class _Handler(BaseHTTPRequestHandler):
    endpoint: PredictServer
    server_version = "camtrap-predict"
    timeout = READ_TIMEOUT_S
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        start = time.perf_counter()
        status, payload, instances = self._post()
        self._send(status, payload)
        log.info(
            "%s %s %d instances=%d %.0f ms from %s",
            self.command,
            self.path,
            status,
            instances,
            (time.perf_counter() - start) * 1000,
            self.client_address[0],
        )

    def _post(self) -> tuple[int, dict[str, Any], int]:
        if not PREDICT_PATH.match(self.path):
            return 404, _error(404, f"no endpoint at {self.path}"), 0
        if self.endpoint.token is not None and not token_matches(
            self.headers.get("Authorization"), self.endpoint.token
        ):
            self.close_connection = True
            return 401, _error(401, "needs Authorization: Bearer <token>"), 0
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            return 411, _error(411, "needs a Content-Length"), 0
        limit = self.endpoint.limits.max_request_bytes
        if int(length) > limit:
            # A client still sending when the socket closes sees a reset, not the 413: a body
            # a few times the limit is read and dropped; a larger one is not worth the wait.
            self.close_connection = True
            if int(length) <= DRAIN_FACTOR * limit:
                self._discard(int(length))
            return (
                413,
                _error(413, f"body of {length} bytes is over {limit} (--max-request-bytes)"),
                0,
            )
        body = self.rfile.read(int(length))
        status, payload = self.endpoint.answer(body)
        return status, payload, len(payload.get("predictions", []))

    def _discard(self, length: int) -> None:
        while length > 0:
            chunk = self.rfile.read(min(length, DRAIN_CHUNK))
            if not chunk:
                return
            length -= len(chunk)

    def _refuse_method(self) -> None:
        if PREDICT_PATH.match(self.path):
            status, message = 405, f"{self.command} not allowed: use POST"
        else:
            status, message = 404, f"no endpoint at {self.path}"
        self.close_connection = True
        self._send(status, _error(status, message), allow=status == 405)
        log.info("%s %s %d from %s", self.command, self.path, status, self.client_address[0])

    do_GET = do_PUT = do_DELETE = do_PATCH = _refuse_method

    def _send(self, status: int, payload: dict[str, Any], allow: bool = False) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status, HTTPStatus(status).phrase)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if allow:
            self.send_header("Allow", "POST")
        if status == 401:
            self.send_header("WWW-Authenticate", "Bearer")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        # One line per request is do_POST's; http.server's own lines (bad request lines) go
        # to the debug log.
        log.debug("%s " + format, self.client_address[0], *args)
