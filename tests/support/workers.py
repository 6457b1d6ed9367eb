"""Several ``camtrap-cloud ingest`` processes on one PostgreSQL store, and a device that resends.

``start_worker`` runs one real ingest process (MQTT shared subscription or Pub/Sub), waits for
its "ingest ready" and keeps its output in files, so a test can SIGKILL it and still read what
it said. ``ResendingDevice`` is a trap's uplink reduced to its delivery rule: send everything,
and send again whatever has not been acked after a while (chunks are acked one by one, a whole
item by ``"complete"``). ``PgStore`` reads the store the workers write.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device import protocol
from device.protocol import Ack, CaptureMeta, DeviceEvent, MediaChunk, Telemetry
from device.uplink.mqtt import MqttTransport
from tests.support.broker import Broker
from tests.support.messages import capture
from tests.support.uplink import wait_until

# What a trap queues and ingest acks (a Status is never acked).
Item = CaptureMeta | MediaChunk | Telemetry | DeviceEvent
SHARE_GROUP = "ingest"
READY_TIMEOUT_S = 30.0


@dataclass
class IngestWorker:
    """One ingest process; its stdout and stderr go to files next to each other."""

    name: str
    proc: subprocess.Popen[bytes]
    out_path: Path
    err_path: Path

    def output(self) -> str:
        return self.out_path.read_text(errors="replace")

    def errors(self) -> str:
        return self.err_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        ready = wait_until(
            lambda: "ingest ready" in self.output() or self.proc.poll() is not None, timeout
        )
        if not ready or "ingest ready" not in self.output():
            raise AssertionError(f"ingest {self.name} did not start: {self.errors()[-2000:]}")

    def stop(self, timeout: float = 30.0) -> dict[str, Any]:
        """SIGTERM, then the summary it printed: the store's counters and what it processed."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout)
        assert self.proc.returncode == 0, f"{self.name}: {self.errors()[-2000:]}"
        summary: dict[str, Any] = json.loads(self.output().strip().splitlines()[-1])
        return summary

    def kill(self) -> None:
        """SIGKILL: no shutdown, no last ack, an open transaction cut off."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()


def start_worker(
    workdir: Path,
    root: Path,
    db_url: str,
    name: str,
    *,
    broker: Broker | None = None,
    share_group: str = SHARE_GROUP,
    subscription: str | None = None,
    extra: Iterable[str] = (),
) -> IngestWorker:
    """An ingest worker on ``db_url``: in ``share_group`` on ``broker``, or on ``subscription``."""
    if broker is not None:
        argv = broker.ingest_command(root)
        argv += ["--client-id", name, "--share-group", share_group]
    else:
        assert subscription is not None, "give a broker or a Pub/Sub subscription"
        argv = [sys.executable, "-m", "cloud_stub.cli", "ingest", "--root", str(root)]
        argv += ["--pubsub-subscription", subscription]
    argv += ["--db", db_url, *extra]
    out_path, err_path = workdir / f"{name}.out", workdir / f"{name}.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=dict(os.environ))
    worker = IngestWorker(name, proc, out_path, err_path)
    try:
        worker.wait_ready()
    except BaseException:
        worker.close()
        raise
    return worker


def _key(message: Item) -> tuple[str, int | None]:
    return (message.item_id, message.index if isinstance(message, MediaChunk) else None)


@dataclass
class ResendingDevice:
    """Sends ``messages`` over ``link`` until ingest has acked each one, resending as a trap does.

    A message unacked ``resend_after_s`` after it was last sent goes again (ingest's dedup
    absorbs the copies). ``sent`` counts every publish, first sends and resends alike.
    """

    link: MqttTransport
    resend_after_s: float = 3.0
    outstanding: dict[tuple[str, int | None], Item] = field(default_factory=dict)
    last_sent: dict[tuple[str, int | None], float] = field(default_factory=dict)
    sent: int = 0
    resent: int = 0

    def queue(self, messages: Iterable[Item]) -> None:
        for message in messages:
            self.outstanding[_key(message)] = message

    def step(self, timeout: float = 0.1) -> None:
        """Send what is due, then take in the acks that have come."""
        now = time.monotonic()
        for key, message in list(self.outstanding.items()):
            last = self.last_sent.get(key)
            due = last is None or now - last >= self.resend_after_s
            if due and self.link.is_connected:
                self.link.send(message)
                self.sent += 1
                self.resent += last is not None
                self.last_sent[key] = now
        event = self.link.next_event(timeout=timeout)
        while event is not None:
            if isinstance(event, Ack):
                self._acked(event)
            event = self.link.next_event(timeout=0)

    def _acked(self, ack: Ack) -> None:
        if ack.chunk == "complete":
            for key in [k for k in self.outstanding if k[0] == ack.item_id]:
                del self.outstanding[key]
        else:
            self.outstanding.pop((ack.item_id, int(ack.chunk)), None)

    def drain(self, timeout: float = 60.0, until: Callable[[], bool] | None = None) -> bool:
        """Step until every message is acked (or ``until()`` holds); False on ``timeout``."""
        deadline = time.monotonic() + timeout
        while self.outstanding and time.monotonic() < deadline:
            self.step()
            if until is not None and until():
                return True
        return not self.outstanding

    def send_copies(self, messages: Iterable[Item], copies: int) -> int:
        """Publish each message ``copies`` times, acks or not (a flood); returns how many."""
        count = 0
        for _ in range(copies):
            for message in messages:
                self.link.send(message)
                count += 1
        self.sent += count
        return count


class PgStore:
    """Looks at the store the workers write, in psycopg's own SQL (``%s`` placeholders); a
    fresh connection for each look, so the looks go on after the server's restart."""

    def __init__(self, url: str) -> None:
        self.url = url

    def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as connection:
            return list(connection.execute(sql, args).fetchall())

    def scalar(self, sql: str, *args: Any) -> Any:
        rows = self.rows(sql, *args)
        return rows[0][0] if rows else None

    def counters(self) -> dict[str, int]:
        rows = self.rows("SELECT name, sum(value) FROM counter_shards GROUP BY name")
        return {name: int(value) for name, value in rows}


@dataclass(frozen=True)
class Backlog:
    """What a trap has queued: captures (metadata, then each file's chunks) and telemetry."""

    messages: list[Item]
    files: dict[str, bytes]  # media id -> the file's bytes
    captures: int
    telemetry: int
    chunks: int


def backlog(
    device_id: str,
    *,
    captures: int,
    telemetry: int = 0,
    file_bytes: int = 6000,
    chunk_limit: int = 4096,
) -> Backlog:
    """A backlog in the order a trap drains it (a file's chunks after its metadata)."""
    messages: list[Item] = []
    files: dict[str, bytes] = {}
    chunks = 0
    for _ in range(captures):
        data = os.urandom(file_bytes)
        meta, _files = capture(device_id, full_files=[data])
        media_id = meta.media[0].media_id
        files[media_id] = data
        messages.append(meta)
        pieces = list(
            protocol.split_media(
                data,
                max_payload_bytes=chunk_limit,
                device_id=device_id,
                item_id=f"full:{media_id}",
                media_id=media_id,
                kind="full",
            )
        )
        chunks += len(pieces)
        messages.extend(pieces)
    for number in range(telemetry):
        messages.append(
            Telemetry(device_id=device_id, item_id=f"tel:{number}", sent_at=protocol.utc_now())
        )
    return Backlog(messages, files, captures, telemetry, chunks)
