"""The registration API over HTTPS (standard library ``http.server`` + ``ssl``).

    GET  /v1/health                      -> {"ok": true}
    POST /v1/enrol                       {token, device_id, csr} -> {certificate, ca, broker}
    PUT  /v1/deployments/<deploymentID>  Camtrap DP deployment record (client certificate)

Enrolment is authorised by a one-time token; later calls by the device's own client
certificate (signed by the fleet CA, CN = device id), which the TLS layer asks for but does not
demand, so a device without one yet can still enrol.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from cryptography import x509

from cloud_stub import pki
from cloud_stub.registry.store import RegistryStore, TokenRefused

log = logging.getLogger("camtrap-cloud.registry")

MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class BrokerInfo:
    host: str
    port: int = 8883
    tls: bool = True


class ApiError(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


def tls_context(cert: Path, key: Path, ca_file: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert), str(key))
    context.load_verify_locations(cafile=str(ca_file))
    context.verify_mode = ssl.CERT_OPTIONAL
    return context


class Registry:
    """What the API does, apart from HTTP."""

    def __init__(self, store: RegistryStore, ca: pki.CertificateAuthority, broker: BrokerInfo):
        self.store, self.ca, self.broker = store, ca, broker

    def enrol(self, body: dict[str, Any]) -> dict[str, Any]:
        token, device_id, csr = body.get("token"), body.get("device_id"), body.get("csr")
        if not all(isinstance(v, str) and v for v in (token, device_id, csr)):
            raise ApiError(HTTPStatus.BAD_REQUEST, "token, device_id and csr are required")
        assert isinstance(token, str) and isinstance(device_id, str) and isinstance(csr, str)

        def sign() -> tuple[str, str]:
            try:
                pem = pki.sign_csr(self.ca, csr.encode(), device_id)
            except pki.PkiError as exc:
                raise ApiError(HTTPStatus.BAD_REQUEST, str(exc)) from exc
            serial = format(x509.load_pem_x509_certificate(pem).serial_number, "x")
            return pem.decode(), serial

        try:
            cert = self.store.enrol(token, device_id, sign)
        except TokenRefused as exc:
            log.warning("enrolment refused for %s: %s", device_id, exc)
            raise ApiError(HTTPStatus.FORBIDDEN, str(exc)) from exc
        log.info("enrolled %s", device_id)
        return {
            "certificate": cert,
            "ca": pki.cert_pem(self.ca.cert).decode(),
            "broker": {"host": self.broker.host, "port": self.broker.port, "tls": self.broker.tls},
        }

    def put_deployment(
        self, device_id: str | None, deployment_id: str, record: dict[str, Any]
    ) -> dict[str, Any]:
        if device_id is None:
            raise ApiError(HTTPStatus.UNAUTHORIZED, "a device client certificate is required")
        if record.get("deploymentID") != deployment_id:
            raise ApiError(HTTPStatus.BAD_REQUEST, "deploymentID does not match the URL")
        if record.get("cameraID") != device_id:
            raise ApiError(HTTPStatus.FORBIDDEN, "cameraID must be the calling device")
        problems = _deployment_problems(record)
        if problems:
            raise ApiError(HTTPStatus.BAD_REQUEST, "; ".join(problems))
        owner = self.store.deployment_owner(deployment_id)
        if owner is not None and owner != device_id:
            raise ApiError(HTTPStatus.CONFLICT, f"deployment {deployment_id} belongs to {owner}")
        self.store.put_deployment(device_id, record)
        log.info("deployment %s from %s", deployment_id, device_id)
        return {"deploymentID": deployment_id, "stored": True}


def _deployment_problems(record: dict[str, Any]) -> list[str]:
    problems = []
    for name in ("deploymentID", "deploymentStart"):
        if not isinstance(record.get(name), str) or not record[name]:
            problems.append(f"{name} is required")
    for name, low, high in (("latitude", -90, 90), ("longitude", -180, 180)):
        value = record.get(name)
        if not isinstance(value, int | float) or not low <= value <= high:
            problems.append(f"{name} must be a number in [{low}, {high}]")
    return problems


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _reply(self, status: HTTPStatus, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ApiError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request too large")
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(HTTPStatus.BAD_REQUEST, f"not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise ApiError(HTTPStatus.BAD_REQUEST, "expected a JSON object")
        return body

    def _client_device(self) -> str | None:
        """The CN of a verified client certificate (the TLS layer checked the fleet CA)."""
        get_peer = getattr(self.connection, "getpeercert", None)
        peer = get_peer() if get_peer else None
        for rdn in (peer or {}).get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    return value
        return None

    def _dispatch(self, method: str) -> None:
        registry = self.server.registry
        try:
            path = self.path.split("?", 1)[0]
            if method == "GET" and path == "/v1/health":
                self._reply(HTTPStatus.OK, {"ok": True})
            elif method == "POST" and path == "/v1/enrol":
                self._reply(HTTPStatus.OK, registry.enrol(self._body()))
            elif method == "PUT" and path.startswith("/v1/deployments/"):
                deployment_id = unquote(path.removeprefix("/v1/deployments/"))
                result = registry.put_deployment(self._client_device(), deployment_id, self._body())
                self._reply(HTTPStatus.OK, result)
            else:
                raise ApiError(HTTPStatus.NOT_FOUND, f"no such endpoint: {method} {path}")
        except ApiError as exc:
            self._reply(exc.status, {"error": str(exc)})

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    registry: Registry


class RegistryServer:
    """The API on ``host:port`` (0 picks a free port), serving on a background thread."""

    def __init__(
        self,
        registry: Registry,
        context: ssl.SSLContext,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.httpd = _Server((host, port), _Handler)
        self.httpd.registry = registry
        # The handshake happens on the request thread, so a slow client cannot stall accept().
        self.httpd.socket = context.wrap_socket(
            self.httpd.socket, server_side=True, do_handshake_on_connect=False
        )
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def start(self) -> None:
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(10)


def build_server(
    root: Path,
    ca_dir: Path,
    broker: BrokerInfo,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    names: tuple[str, ...] = ("localhost", "127.0.0.1"),
    cert: Path | None = None,
    key: Path | None = None,
) -> RegistryServer:
    """A server for ``root``; without ``cert``/``key`` the fleet CA issues one for ``names``."""
    ca = pki.load_ca(ca_dir)
    if cert is None or key is None:
        tls_dir = root / "tls"
        cert, key = tls_dir / "server.crt", tls_dir / "server.key"
        if not cert.exists() or not key.exists():
            tls_dir.mkdir(parents=True, exist_ok=True)
            cert, key = pki.issue_server_cert(ca, tls_dir, names)
    registry = Registry(RegistryStore(root), ca, broker)
    return RegistryServer(registry, tls_context(cert, key, ca.cert_path), host, port)
