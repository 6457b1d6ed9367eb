"""The transport-independent heart of ingest: validate, deduplicate, store, then answer.

``Ingestor.handle_batch`` takes raw payloads with the device id the transport vouches for (the
MQTT topic, which the broker's ACL ties to the client certificate; or the Pub/Sub attribute)
and returns, per payload, the replies to send. It commits before it returns, so a caller that
sends the replies afterwards never acknowledges anything that is not on disk. A bad message is
rejected with a reason (logged, counted, recorded in ``rejections``); it never raises.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cloud_stub.ingest.prediction_queue import enqueue_unclassified
from cloud_stub.ingest.store import IngestStore, is_transient
from device.contracts import protocol
from device.contracts.hashing import sha256_hex, sha256_pieces
from device.contracts.protocol import (
    Ack,
    CaptureMeta,
    DeviceEvent,
    ErrorReply,
    MediaChunk,
    ProtocolError,
    Status,
    Telemetry,
)

log = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# Waits before each retry of a batch that met a transient PostgreSQL failure (about 30 s in
# all: a server restart or a fail-over fits; a longer outage is left to the devices' resend).
TRANSIENT_RETRY_S = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0)


@dataclass(frozen=True)
class Incoming:
    source: str  # MQTT topic or Pub/Sub subscription, for the log
    device_id: str | None  # who the transport says sent it
    subtopic: str | None  # "meta", "media", ... from the topic or the Pub/Sub attribute
    payload: bytes
    # ``payload`` already decoded by the transport's own thread (``decode_early``), so the
    # worker that commits does not also spend its time hashing chunks. None: decode here.
    decoded: protocol.UpMessage | protocol.DownMessage | ProtocolError | None = None


def decode_early(
    payload: bytes, max_bytes: int
) -> protocol.UpMessage | protocol.DownMessage | ProtocolError | None:
    """What ``Ingestor`` would make of ``payload``, for ``Incoming.decoded``; never raises."""
    try:
        return protocol.decode(payload, max_bytes=max_bytes)
    except ProtocolError as exc:
        return exc
    except Exception:
        # A bug in decoding must not end the transport's thread: the worker decodes it again
        # and records the failure like any other.
        return None


@dataclass
class Outcome:
    replies: list[Ack | ErrorReply] = field(default_factory=list)
    # The sender cannot be told (Pub/Sub): redeliver later instead of acking, e.g. a chunk that
    # overtook its metadata.
    retry_later: bool = False
    rejected: str | None = None


class Ingestor:
    def __init__(
        self,
        root: Path,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        *,
        db_url: str | None = None,
        media: str | None = None,
        retry_wait: Callable[[float], None] = time.sleep,
        retry_schedule: Sequence[float] = TRANSIENT_RETRY_S,
    ) -> None:
        self.store = IngestStore(root, url=db_url, media=media)
        self.max_message_bytes = max_message_bytes
        self.retry_wait = retry_wait
        self.retry_schedule = tuple(retry_schedule)
        # MQTT and Pub/Sub sources may run side by side; the store has one connection.
        self._lock = threading.Lock()

    def close(self) -> None:
        self.store.close()

    def handle(self, item: Incoming) -> Outcome:
        return self.handle_batch([item])[0]

    def handle_batch(self, items: list[Incoming]) -> list[Outcome]:
        """Process ``items`` in one transaction; replies are safe to send once this returns.

        On PostgreSQL a batch may lose a deadlock to another worker, or the server may restart
        under it: the whole batch is rolled back and tried again on a fresh connection. If it
        still fails this raises, and the caller acknowledges nothing (the device resends).
        """
        with self._lock:
            for attempt in range(len(self.retry_schedule) + 1):
                try:
                    return self._handle_batch(items)
                except Exception as exc:
                    if not is_transient(exc) or attempt == len(self.retry_schedule):
                        raise
                    log.warning("ingest batch will be retried: %s", str(exc).strip()[:200])
                    self.retry_wait(self.retry_schedule[attempt])
                    self._reconnect_quietly()
            raise AssertionError("unreachable")

    def _reconnect_quietly(self) -> None:
        try:
            self.store.reconnect()
        except Exception as exc:  # the server is still down: the next attempt says so
            log.warning("ingest cannot reconnect yet: %s", str(exc).strip()[:200])

    def _handle_batch(self, items: list[Incoming]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        self.store.begin()
        try:
            for item in items:
                self.store.savepoint()
                try:
                    outcome = self._handle(item)
                    self.store.release()
                except Exception as exc:
                    if is_transient(exc):
                        raise  # the connection or the transaction is gone: retry the batch
                    # A bug or a disk error on one message must not lose the rest of the batch.
                    log.exception("ingest failed on a message from %s", item.source)
                    self.store.rollback_to_savepoint()
                    outcome = self._reject(item, "internal_error", repr(exc)[:500])
                    outcome.retry_later = True
                outcomes.append(outcome)
            # Files first, then the rows that point at them; acks go out only after both.
            self.store.media.flush()
            self.store.commit()
        except BaseException:
            self.store.media.discard()
            self.store.rollback()
            raise
        return outcomes

    # -- one message -------------------------------------------------------------------------

    def _reject(
        self, item: Incoming, reason: str, detail: str, device: str | None = None
    ) -> Outcome:
        log.warning("rejected message on %s: %s: %s", item.source, reason, detail)
        self.store.reject(_now(), item.source, device or item.device_id, reason, detail)
        return Outcome(rejected=reason)

    def _handle(self, item: Incoming) -> Outcome:
        if item.device_id is None:
            return self._reject(item, "unauthorised", "no device identity from the transport")
        try:
            message = self._decode(item)
        except ProtocolError as exc:
            outcome = self._reject(item, exc.reason, exc.detail)
            bad = exc.header
            if bad is not None and bad.device_id == item.device_id:
                # The header was sound, only the bytes were not: ask for that chunk again.
                outcome.replies.append(_error(bad, exc.reason, exc.detail, retryable=True))
            return outcome
        if message.device_id != item.device_id:
            return self._reject(
                item,
                "unauthorised",
                f"payload says device {message.device_id!r}, transport says {item.device_id!r}",
            )
        expected = protocol.UP_SUFFIX_OF.get(message.type)
        if expected is None or (item.subtopic is not None and item.subtopic != expected):
            return self._reject(item, "wrong_topic", f"{message.type} on {item.subtopic!r}")
        at = _now()
        self.store.seen(message.device_id, at)
        if isinstance(message, MediaChunk):
            return self._chunk(item, message, at)
        if isinstance(message, Status):
            self.store.store_status(message, at)
            return Outcome()
        assert isinstance(message, CaptureMeta | Telemetry | DeviceEvent)
        if isinstance(message, CaptureMeta):
            conflict = self.store.owner_conflict(message)
            if conflict:
                return self._reject(item, "unauthorised", conflict)
        # Claiming the item first makes a duplicate on another worker wait for this commit.
        if not self.store.claim(message.device_id, message.item_id, message.type, at):
            self.store.count(f"duplicates.{message.type}")
            return Outcome(replies=[_ack(message, "complete", duplicate=True)])
        if isinstance(message, CaptureMeta):
            self.store.store_capture(message, at)
        elif isinstance(message, Telemetry):
            self.store.store_telemetry(message, at)
        else:
            self.store.store_device_event(message)
        self.store.count(f"stored.{message.type}")
        return Outcome(replies=[_ack(message, "complete")])

    def _decode(self, item: Incoming) -> protocol.UpMessage | protocol.DownMessage:
        if item.decoded is None:
            return protocol.decode(item.payload, max_bytes=self.max_message_bytes)
        if isinstance(item.decoded, ProtocolError):
            raise item.decoded
        return item.decoded

    def _chunk(self, item: Incoming, chunk: MediaChunk, at: str) -> Outcome:
        row = self.store.media_row(chunk.media_id, lock=True)
        if row is None or row["device_id"] != chunk.device_id:
            # Usually the chunk overtook its metadata; the device (or Pub/Sub) tries again later.
            outcome = self._reject(item, "unknown_media", f"media {chunk.media_id}")
            outcome.replies.append(_error(chunk, "unknown_media", "send the metadata first"))
            outcome.retry_later = True
            return outcome
        if chunk.kind == "full" and row["sha256"] and row["sha256"] != chunk.sha256:
            outcome = self._reject(
                item, "sha256_mismatch", f"{chunk.media_id}: file differs from its metadata"
            )
            outcome.replies.append(
                _error(chunk, "sha256_mismatch", "file differs from its metadata", retryable=False)
            )
            return outcome
        stored_path, stored_sha = (
            (row["thumbnail_path"], row["thumbnail_sha256"])
            if chunk.kind == "thumbnail"
            else (row["file_path"], row["sha256"])
        )
        if stored_path and stored_sha == chunk.sha256:
            self.store.count("duplicates.chunk")
            return Outcome(replies=[_ack(chunk, "complete", duplicate=True)])

        if chunk.count == 1:
            # The common thumbnail case: the whole file is in hand, no need to stage it.
            # decode() already hashed the data; equal digests spare hashing it twice.
            whole_ok = chunk.chunk_sha256 == chunk.sha256 or (
                sha256_hex(chunk.data) == chunk.sha256
            )
            if not whole_ok:
                rejected = self._reject(
                    item, "file_sha256_mismatch", f"{chunk.media_id} {chunk.kind}: bad file hash"
                )
                rejected.replies.append(
                    _error(chunk, "file_sha256_mismatch", "resend the file", restart=True)
                )
                return rejected
            relative = self.store.media_target(row, chunk.kind)
            self.store.install_file([chunk.data], relative)
            self.store.record_file(chunk.media_id, chunk.kind, relative, chunk.sha256, at)
            enqueue_unclassified(self.store.db, chunk.media_id, chunk.kind, at)
            self.store.count(f"stored.{chunk.kind}")
            # "complete" covers every chunk, so a one-chunk file needs no per-chunk ack.
            return Outcome(replies=[_ack(chunk, "complete")])

        duplicate = not self.store.put_chunk(chunk, at)
        if duplicate:
            self.store.count("duplicates.chunk")
        outcome = Outcome(replies=[_ack(chunk, chunk.index, duplicate=duplicate)])
        if self.store.chunks_held(chunk) < chunk.count:
            return outcome
        if sha256_pieces(self.store.chunk_pieces(chunk)) != chunk.sha256:
            self.store.discard_chunks(chunk)
            rejected = self._reject(
                item, "file_sha256_mismatch", f"{chunk.media_id} {chunk.kind}: chunks do not add up"
            )
            rejected.replies.append(
                _error(chunk, "file_sha256_mismatch", "resend every chunk", restart=True)
            )
            return rejected
        relative = self.store.media_target(row, chunk.kind)
        self.store.install_file(self.store.chunk_pieces(chunk), relative)
        self.store.record_file(chunk.media_id, chunk.kind, relative, chunk.sha256, at)
        # Media of an unclassified event (vision off) wait for the endpoint: predictor.py.
        enqueue_unclassified(self.store.db, chunk.media_id, chunk.kind, at)
        # In the same transaction as the file's row: a crash before the commit keeps both.
        self.store.discard_chunks(chunk)
        self.store.count(f"stored.{chunk.kind}")
        outcome.replies.append(_ack(chunk, "complete"))
        return outcome


def _ack(
    message: CaptureMeta | Telemetry | DeviceEvent | MediaChunk,
    chunk: int | str,
    duplicate: bool = False,
) -> Ack:
    return Ack(
        device_id=message.device_id, item_id=message.item_id, chunk=chunk, duplicate=duplicate
    )


def _error(
    chunk: MediaChunk, reason: str, detail: str, retryable: bool = True, restart: bool = False
) -> ErrorReply:
    return ErrorReply(
        device_id=chunk.device_id,
        item_id=chunk.item_id,
        reason=reason,
        detail=detail,
        retryable=retryable,
        restart=restart,
    )


def _now() -> str:
    return datetime.now(UTC).isoformat()
