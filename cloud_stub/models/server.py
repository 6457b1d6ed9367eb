"""The stub's pack server: plain HTTP(S) file serving of ``<root>/packs`` with Range support.

Integrity never depends on this server (devices check the signature and every sha256), so it
is deliberately simple. ``drop_after_bytes`` cuts the first response for each file after that
many bytes, like a link that dies mid-download: tests and the demo use it to show resuming.
"""

from __future__ import annotations

import re
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


class PackServer:
    def __init__(
        self,
        packs_dir: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        drop_after_bytes: int | None = None,
    ) -> None:
        self.packs_dir = Path(packs_dir).resolve()
        self.drop_after_bytes = drop_after_bytes
        self.dropped: set[str] = set()
        self.requests: list[tuple[str, str | None, int]] = []  # (path, Range, status)
        self.sent: dict[str, int] = {}  # body bytes written per request path
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer((host, port), _handler(self))
        self.httpd.daemon_threads = True
        self.scheme = "http"
        if cert_file:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        if isinstance(host, bytes):  # typeshed allows it (AF_UNIX); an IP server gives str
            host = host.decode()
        return f"{self.scheme}://{host}:{port}"

    def pack_url(self, name: str, version: str) -> str:
        return f"{self.url}/packs/{name}@{version}"

    def start(self) -> PackServer:
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="pack-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> PackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def resolve(self, url_path: str) -> Path | None:
        path = unquote(urlsplit(url_path).path)
        if not path.startswith("/packs/"):
            return None
        target = (self.packs_dir / path[len("/packs/") :]).resolve()
        if not target.is_relative_to(self.packs_dir) or not target.is_file():
            return None
        return target

    def should_drop(self, path: str) -> bool:
        with self._lock:
            if self.drop_after_bytes is None or path in self.dropped:
                return False
            self.dropped.add(path)
            return True

    def log(self, path: str, range_header: str | None, status: int) -> None:
        with self._lock:
            self.requests.append((path, range_header, status))

    def count_sent(self, path: str, size: int) -> None:
        with self._lock:
            self.sent[path] = self.sent.get(path, 0) + size

    def bytes_sent(self, name: str, version: str) -> int:
        """Body bytes served for pack ``name@version`` so far (every file, retries and
        resumed ranges included): what the devices really downloaded."""
        prefix = urlsplit(self.pack_url(name, version)).path + "/"
        with self._lock:
            return sum(n for path, n in self.sent.items() if unquote(path).startswith(prefix))


def _handler(server: PackServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass  # requests are recorded in server.requests instead of stderr

        def do_GET(self) -> None:
            range_header = self.headers.get("Range")
            target = server.resolve(self.path)
            if target is None:
                server.log(self.path, range_header, 404)
                self.send_error(404)
                return
            size = target.stat().st_size
            start, end, status = 0, size - 1, 200
            if range_header:
                match = _RANGE.match(range_header.strip())
                first = int(match.group(1)) if match else size
                if not match or first >= size:
                    server.log(self.path, range_header, 416)
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start, status = first, 206
                if match.group(2):
                    end = min(end, int(match.group(2)))
            length = end - start + 1
            server.log(self.path, range_header, status)
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(length))
            self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.end_headers()
            limit = length
            if server.should_drop(self.path):
                limit = min(length, server.drop_after_bytes or 0)
            with target.open("rb") as fh:
                fh.seek(start)
                sent = 0
                while sent < limit:
                    block = fh.read(min(64 * 1024, limit - sent))
                    if not block:
                        break
                    self.wfile.write(block)
                    sent += len(block)
                    server.count_sent(self.path, len(block))
            if limit < length:
                self.wfile.flush()
                self.close_connection = True

    return Handler
