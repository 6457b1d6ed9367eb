"""A shaped TCP proxy: a slow, high-latency link (cellular, satellite) between device and broker.

Each direction is one shared pipe, whatever the number of connections through it:

* **bandwidth**: bytes are serialised onto the pipe one after another at ``rate_bps``, so a
  chunk read at ``t`` leaves at ``max(t, pipe free) + bits / rate``;
* **one-way delay**: each byte arrives ``delay_s`` after it left, independently of the bytes
  behind it, so the pipe holds a whole bandwidth-delay product in flight (not stop-and-wait);
* **a bounded buffer**: at most ``bandwidth-delay product + buffer_bytes`` wait inside the
  emulator. Beyond that the proxy stops reading and the sender's own socket fills, as on a real
  modem; without the bound a sender would see an infinitely fast first hop.

``cut()`` drops every open connection at once (a lost signal), ``block()`` also refuses new ones
until ``unblock()``. ``bytes_up`` / ``bytes_down`` count TCP payload bytes (TLS records and all)
delivered each way; IP and TCP headers are not seen from user space.

Timing is real (threads and ``time.monotonic``): tests of the emulator assert loose bounds.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from dataclasses import dataclass

from tests.support.proxy import TcpProxy, close_all


@dataclass(frozen=True)
class Shape:
    """One direction of a link: ``rate_bps`` None means unshaped (a LAN)."""

    rate_bps: float | None = None
    delay_s: float = 0.0
    buffer_bytes: int = 64 * 1024

    @property
    def capacity(self) -> int:
        """Bytes the emulator holds before it stops reading: the pipe plus the modem's queue."""
        bdp = 0 if self.rate_bps is None else int(self.rate_bps / 8 * self.delay_s)
        return bdp + self.buffer_bytes

    @property
    def read_size(self) -> int:
        # About 10 ms of the link per read: fine enough that timing follows the rate.
        if self.rate_bps is None:
            return 65536
        return max(1024, min(65536, int(self.rate_bps / 8 / 100)))


@dataclass(frozen=True)
class Link:
    """Both directions of a link; symmetric by default."""

    up: Shape
    down: Shape

    @classmethod
    def symmetric(cls, rate_bps: float | None, rtt_s: float = 0.0) -> Link:
        shape = Shape(rate_bps, rtt_s / 2)
        return cls(shape, shape)


CELLULAR = Link.symmetric(2_000_000, 0.300)
SATELLITE = Link.symmetric(256_000, 0.700)
LAN = Link.symmetric(None)


class _Pipe:
    """One direction's serialisation clock, shared by every connection going that way."""

    def __init__(self, shape: Shape) -> None:
        self.shape = shape
        self.free_at = 0.0
        self.lock = threading.Lock()
        self.delivered = 0

    def schedule(self, size: int) -> float:
        """When ``size`` bytes handed over now arrive at the far end (monotonic seconds)."""
        now = time.monotonic()
        if self.shape.rate_bps is None:
            return now + self.shape.delay_s
        with self.lock:
            start = max(now, self.free_at)
            self.free_at = start + size * 8 / self.shape.rate_bps
            return self.free_at + self.shape.delay_s


class _Direction:
    """src -> dst through a pipe: a reader thread stamps chunks, a writer delivers them on time."""

    def __init__(self, emulator: LinkEmulator, src: socket.socket, dst: socket.socket, up: bool):
        self.emulator = emulator
        self.src, self.dst, self.up = src, dst, up
        self.pipe = emulator.pipe_up if up else emulator.pipe_down
        self.queue: deque[tuple[float, bytes]] = deque()
        self.held = 0
        self.eof = False
        self.cond = threading.Condition()
        name = "link-up" if up else "link-down"
        threading.Thread(target=self._read, name=f"{name}-read", daemon=True).start()
        threading.Thread(target=self._write, name=f"{name}-write", daemon=True).start()

    def _read(self) -> None:
        shape = self.pipe.shape
        try:
            while True:
                with self.cond:
                    while self.held >= shape.capacity and not self.eof:
                        self.cond.wait()
                    if self.eof:
                        return
                data = self.src.recv(shape.read_size)
                if not data:
                    break
                arrive = self.pipe.schedule(len(data))
                with self.cond:
                    self.queue.append((arrive, data))
                    self.held += len(data)
                    self.cond.notify_all()
        except OSError:
            pass
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def _write(self) -> None:
        try:
            while True:
                with self.cond:
                    while not self.queue and not self.eof:
                        self.cond.wait()
                    if not self.queue:
                        break
                    arrive, data = self.queue[0]
                wait = arrive - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                # Counted before it is sent: once the far end holds the bytes, the counter
                # already does (a test reading it right after its peer got everything raced
                # the count when it came after ``sendall``).
                self.emulator._count(self.up, len(data))
                self.dst.sendall(data)
                with self.cond:
                    self.queue.popleft()
                    self.held -= len(data)
                    self.cond.notify_all()
        except OSError:
            pass
        close_all((self.src, self.dst))
        with self.cond:
            self.eof = True
            self.cond.notify_all()


class LinkEmulator(TcpProxy):
    """Listen on a free local port and carry each connection to ``target_port`` over ``link``.

    The controls of ``tests.support.proxy.TcpProxy`` (``port``, ``cut``, ``block``,
    ``unblock``, ``close``, ``bytes_up``, ``connections``), plus ``bytes_down``.
    """

    def __init__(self, target_port: int, link: Link = LAN, host: str = "127.0.0.1") -> None:
        self.link = link
        self.pipe_up = _Pipe(link.up)
        self.pipe_down = _Pipe(link.down)
        self.bytes_down = 0
        self._directions: list[_Direction] = []
        super().__init__(target_port, host)

    @property
    def bytes_total(self) -> int:
        return self.bytes_up + self.bytes_down

    @property
    def held(self) -> int:
        """Bytes inside the emulator now (in the pipe or its queue), both ways."""
        with self._lock:
            return sum(d.held for d in self._directions)

    def reset_counters(self) -> None:
        with self._lock:
            self.bytes_up = self.bytes_down = 0

    def _count(self, up: bool, size: int) -> None:
        with self._lock:
            if up:
                self.bytes_up += size
            else:
                self.bytes_down += size

    def _carry(self, client: socket.socket, upstream: socket.socket) -> None:
        for sock in (client, upstream):
            # The emulator does the pacing; Nagle would add its own delays on top.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._directions = [d for d in self._directions if not d.eof]
        self._directions += [
            _Direction(self, client, upstream, up=True),
            _Direction(self, upstream, client, up=False),
        ]
