"""The link emulator shapes a TCP stream to a rate and a one-way delay, and drops it on demand.

Timing here is real, on a shared machine: lower bounds are firm (the emulator must never be
faster than the link), upper bounds are loose.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.support.link_emulator import LAN, Link, LinkEmulator, Shape


class Sink:
    """A local TCP server that reads everything and notes when each byte count was reached."""

    def __init__(self, echo: bool = False) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.echo = echo
        self.received = 0
        self.done = threading.Event()
        self.expect = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                if self.echo:
                    conn.sendall(data)
                self.received += len(data)
                if self.expect and self.received >= self.expect:
                    self.done.set()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def sink() -> Iterator[Sink]:
    server = Sink()
    yield server
    server.close()


@pytest.fixture
def echo() -> Iterator[Sink]:
    server = Sink(echo=True)
    yield server
    server.close()


def test_a_megabit_link_carries_500_kb_no_faster_than_its_rate(sink: Sink) -> None:
    link = LinkEmulator(sink.port, Link.symmetric(1_000_000, 0.0))
    payload = 500_000
    ideal_s = payload * 8 / 1_000_000
    sink.expect = payload
    try:
        with socket.create_connection(("127.0.0.1", link.port)) as conn:
            start = time.monotonic()
            conn.sendall(b"x" * payload)
            assert sink.done.wait(ideal_s * 5), "the link never delivered everything"
            took = time.monotonic() - start
    finally:
        link.close()
    assert took >= 0.9 * ideal_s
    assert took <= 3.0 * ideal_s
    assert link.bytes_up == payload


def test_one_way_delay_applies_to_each_byte_not_to_each_round_trip(echo: Sink) -> None:
    # A 200 ms RTT link of 8 Mbit/s: one small message comes back after about one RTT, and a
    # stream of them is not stop-and-wait (20 messages take far less than 20 RTTs).
    link = LinkEmulator(echo.port, Link.symmetric(8_000_000, 0.200))
    try:
        with socket.create_connection(("127.0.0.1", link.port)) as conn:
            start = time.monotonic()
            conn.sendall(b"ping")
            assert conn.recv(16) == b"ping"
            rtt = time.monotonic() - start
            start = time.monotonic()
            for _ in range(20):
                conn.sendall(b"y" * 1000)
            got = 0
            while got < 20_000:
                got += len(conn.recv(65536))
            burst = time.monotonic() - start
    finally:
        link.close()
    assert 0.19 <= rtt <= 1.0
    assert burst < 5 * 0.2, f"20 messages took {burst:.2f} s: the pipe is stop-and-wait"


def test_the_pipe_holds_a_bandwidth_delay_product_in_flight(sink: Sink) -> None:
    # 2 Mbit/s with 300 ms RTT: 250 KB/s; 300 KB through it take about 1.2 s of serialisation
    # plus one 150 ms one-way delay, not one delay per read.
    link = LinkEmulator(sink.port, Link.symmetric(2_000_000, 0.300))
    payload = 300_000
    ideal_s = payload * 8 / 2_000_000 + 0.150
    sink.expect = payload
    try:
        with socket.create_connection(("127.0.0.1", link.port)) as conn:
            start = time.monotonic()
            conn.sendall(b"z" * payload)
            assert sink.done.wait(ideal_s * 5)
            took = time.monotonic() - start
    finally:
        link.close()
    assert 0.9 * ideal_s <= took <= 3.0 * ideal_s


def test_the_emulator_stops_reading_when_its_buffer_is_full(sink: Sink) -> None:
    # A slow link with a small buffer: the sender's socket fills instead of the emulator's RAM.
    shape = Shape(rate_bps=80_000, delay_s=0.0, buffer_bytes=16 * 1024)
    link = LinkEmulator(sink.port, Link(shape, shape))
    try:
        with socket.create_connection(("127.0.0.1", link.port)) as conn:
            conn.setblocking(False)
            sent = 0
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                try:
                    sent += conn.send(b"q" * 65536)
                except BlockingIOError:
                    time.sleep(0.05)
            held = link.held
    finally:
        link.close()
    assert sent > shape.capacity, "the sender never filled the buffer"
    assert held <= shape.capacity + shape.read_size


def test_counters_see_both_directions(echo: Sink) -> None:
    link = LinkEmulator(echo.port, LAN)
    try:
        with socket.create_connection(("127.0.0.1", link.port)) as conn:
            conn.sendall(b"a" * 10_000)
            got = 0
            while got < 10_000:
                got += len(conn.recv(65536))
            deadline = time.monotonic() + 5
            while link.bytes_down < 10_000 and time.monotonic() < deadline:
                time.sleep(0.01)
    finally:
        link.close()
    assert link.bytes_up == 10_000
    assert link.bytes_down == 10_000
    assert link.bytes_total == 20_000
    assert link.connections == 1


def test_cut_drops_every_connection_and_block_refuses_new_ones(echo: Sink) -> None:
    link = LinkEmulator(echo.port, Link.symmetric(1_000_000, 0.05))
    try:
        first = socket.create_connection(("127.0.0.1", link.port))
        second = socket.create_connection(("127.0.0.1", link.port))
        first.sendall(b"hello")
        assert first.recv(16) == b"hello"
        link.block()
        for conn in (first, second):
            conn.settimeout(5)
            with contextlib.suppress(ConnectionResetError):  # a reset is a drop too
                assert conn.recv(16) == b""
            conn.close()
        refused = socket.create_connection(("127.0.0.1", link.port))
        refused.settimeout(5)
        with contextlib.suppress(ConnectionResetError):
            assert refused.recv(16) == b""
        refused.close()
        link.unblock()
        third = socket.create_connection(("127.0.0.1", link.port))
        third.sendall(b"again")
        third.settimeout(5)
        assert third.recv(16) == b"again"
        third.close()
    finally:
        link.close()
