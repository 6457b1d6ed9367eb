"""A TCP proxy we control, to cut a device's link mid-upload without touching the broker.

Threads copy bytes both ways. ``cut()`` closes every open connection at once (what a dropped
Wi-Fi or cellular link looks like to both ends); ``block()`` also refuses new connections until
``unblock()``. ``bytes_up`` counts bytes the device sent through it.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable
from contextlib import suppress


def close_all(socks: Iterable[socket.socket]) -> None:
    """What a dropped link looks like to both ends: each socket shut down and closed."""
    for sock in socks:
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with suppress(OSError):
            sock.close()


class TcpProxy:
    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (host, target_port)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.blocked = threading.Event()
        self.bytes_up = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._closed = threading.Event()
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.blocked.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open += [client, upstream]
                self.connections += 1
                self._carry(client, upstream)

    def _carry(self, client: socket.socket, upstream: socket.socket) -> None:
        """Copy bytes both ways, as they come (a shaped link overrides this); under _lock."""
        threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
        threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if up:  # counted first: once the far end has the bytes, so does the count
                    with self._lock:
                        self.bytes_up += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            close_all((src, dst))

    def cut(self) -> None:
        with self._lock:
            victims, self._open = self._open, []
        close_all(victims)

    def block(self) -> None:
        self.blocked.set()
        self.cut()

    def unblock(self) -> None:
        self.blocked.clear()

    def close(self) -> None:
        self._closed.set()
        with suppress(OSError):
            self.listener.close()
        self.cut()
