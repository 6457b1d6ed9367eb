"""The drain loop: outbox items out over the link, marked done only on ingest's ``complete``.

One thread owns the whole exchange, so no lock guards the window:

1. **claim** due items (most valuable first) the sync policy allows on this link (kinds, and
   on a metered link no deferred blanks: ``SyncPolicy.allowance``);
2. **build** messages: metadata from the database (only for classified events), media and
   thumbnails cut with ``protocol.split_media`` at the link's payload limit, resuming after the
   chunks ingest already acknowledged. A thumbnail or media item waits until its event's
   metadata is done, because ingest refuses chunks for media it has not heard of;
3. **pump** chunks while the unacknowledged bytes stay under ``uplink.window_bytes``: many
   items in flight at once is what keeps the link busy;
4. **acks** from ingest: chunk acks advance the resume point, ``complete`` marks the item done,
   errors restart, retry with backoff or kill the item;
5. **flush** the outcomes in a few batched transactions (each one is an fsync on the card).

The byte window adapts to the link (``Pacing``): it starts small and grows with the bytes
acknowledged, but never holds more than a quarter of ``ack_timeout_s`` at the rate acks come
back, so on a slow link no item waits behind others until it times out. An item's ack deadline
runs from when its last frame went out, plus the time the bytes ahead of it need at that rate.

When the link drops every item in flight goes back to pending at once (no attempt counted);
an item that hears nothing for ``ack_timeout_s`` is retried with backoff. Acks that arrive
for items no longer in the window are still applied: ingest has the data, whatever we thought.
An item not ready yet waits in the outbox (``waiting_classification``, ``waiting_metadata``)
and is claimed again once its delay has passed.

The drain reads and writes the device database only through the store's repositories
(``Outbox``, ``Media``, ``KeyValues``).

Between rounds the drain blocks in the transport's ``next_event`` until an ack, a ``wake()``
(new captures), or the earliest thing due: a deadline, a flush, the next outbox due time, a
tick hook's due time; at most ``IDLE_CEILING_S``. Offline it waits out the connect backoff
(doubling to ``max_offline_backoff_s``), and tick hooks do not run.

Its timing runs on two injectable clocks: ``clock``
(a ``device.clock.MonotonicClock``: deadlines, flush and claim pacing, the offline wait) and
``wall_clock`` (unix seconds: the outbox's due times and stamps).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from device import protocol
from device.clock import SYSTEM_CLOCK, MonotonicClock
from device.protocol import Ack, CaptureMeta, ErrorReply, MediaChunk, ProtocolError
from device.store.db import Database, Source
from device.store.kv import KeyValues
from device.store.media import Media, MediaRow
from device.store.outbox import Outbox, OutboxItem
from device.store.vocabulary import ItemKind, OutboxState, item_id_for
from device.uplink import payloads
from device.uplink.connectivity import FixedProbe, NetworkProbe
from device.uplink.policy import EVERYTHING, Allowance, SyncPolicy
from device.uplink.transport import NotConnected, PayloadTooLarge, Transport, TransportError

log = logging.getLogger("camtrap.uplink")

KV_LAST_SYNC = "uplink.last_sync_at"
UNREADY_DELAY_S = 5.0
FLUSH_INTERVAL_S = 0.2
FLUSH_MAX_COMPLETES = 1000
# The shortest pause between two claims that found nothing (a hook without a due time is
# also ticked this often); the longest online wait when nothing at all is due.
IDLE_POLL_S = 1.0
IDLE_CEILING_S = 60.0
# Items the sync policy holds back (a metered link, the day's byte budget, shedding) may go as
# soon as the policy changes its mind, which nothing announces: look again this often.
POLICY_POLL_S = 5.0
META_OVERHEAD = 2048  # rough bytes of a metadata message, for the byte window only


@dataclass
class Flight:
    """One item in the window, with the frames still to send and the chunks acknowledged."""

    item: OutboxItem
    frames: list[CaptureMeta | MediaChunk]
    deadline: float
    waiting_on: str | None = None  # a metadata item still in flight ahead of this one
    next: int = 0
    unacked: dict[int, int] = field(default_factory=dict)  # frame index -> bytes
    acked: set[int] = field(default_factory=set)
    contiguous: int = 0  # leading chunks acknowledged (the resume point)
    dirty: bool = False  # contiguous moved since the last flush


class Pacing:
    """How many unacknowledged bytes the link can take without queueing past the ack timeout.

    Like TCP's slow start, the window grows by every byte acknowledged (so it doubles each
    round trip from ``INITIAL_BYTES``); the delivery rate, sampled each ``SAMPLE_S`` while
    bytes are in flight, caps it at ``QUEUE_SHARE`` of the ack timeout's worth of link time.
    """

    INITIAL_BYTES = 512 * 1024
    MIN_BYTES = 64 * 1024
    SAMPLE_S = 1.0
    QUEUE_SHARE = 0.25
    DECAY = 0.9  # a lower sample lowers the rate only slowly: a pause in acks is not the link

    def __init__(self, ceiling: int, ack_timeout_s: float) -> None:
        self.ceiling = ceiling
        self.ack_timeout_s = ack_timeout_s
        self.reset()

    def reset(self) -> None:
        self.window = min(self.ceiling, self.INITIAL_BYTES)
        self.rate: float | None = None  # bytes/s acknowledged
        self.acked = 0
        self._mark: tuple[float, int] | None = None

    def on_acked(self, nbytes: int) -> None:
        self.acked += nbytes
        self.window = min(self.limit(), self.window + nbytes)

    def limit(self) -> int:
        if self.rate is None:
            return self.ceiling
        queue_cap = int(self.rate * self.ack_timeout_s * self.QUEUE_SHARE)
        return min(self.ceiling, max(self.MIN_BYTES, queue_cap))

    def sample(self, now: float, busy: bool) -> None:
        """Called each round; ``busy``: bytes are in flight (idle time is not the link's)."""
        if not busy:
            self._mark = None
            return
        if self._mark is None:
            self._mark = (now, self.acked)
            return
        t0, b0 = self._mark
        if now - t0 < self.SAMPLE_S:
            return
        rate = (self.acked - b0) / (now - t0)
        self.rate = rate if self.rate is None else max(rate, self.rate * self.DECAY)
        self._mark = (now, self.acked)
        self.window = min(self.window, self.limit())

    def queue_s(self, unacked: int) -> float:
        """Seconds the link needs for ``unacked`` bytes at the measured rate (0 unmeasured)."""
        return unacked / self.rate if self.rate else 0.0


@dataclass
class Progress:
    items_done: int = 0
    bytes_done: int = 0
    items_dead: int = 0
    retries: int = 0
    online: bool = False
    # Why the cloud is not reachable, naming the host ("MQTT broker h:p: refused"); None online.
    offline_reason: str | None = None


class Drain:
    def __init__(
        self,
        db: Database,
        transport: Transport,
        *,
        data_dir: Path,
        device_id: str,
        vision: bool,
        policy: SyncPolicy | None = None,
        probe: NetworkProbe | None = None,
        outbox: Outbox | None = None,
        window_items: int = 256,
        window_bytes: int = 32 * 1024 * 1024,
        ack_timeout_s: float = 60.0,
        connect_timeout_s: float = 5.0,
        max_offline_backoff_s: float = 60.0,
        clock: MonotonicClock = SYSTEM_CLOCK,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.transport = transport
        self.data_dir = data_dir
        self.device_id = device_id
        self.vision = vision
        self.clock = clock
        self.wall_clock = wall_clock
        self.outbox = outbox or Outbox(db, clock=wall_clock)
        self.media = Media(db)
        self.kv = KeyValues(db)
        self.policy = policy or SyncPolicy(db, clock=wall_clock)
        self.probe = probe or FixedProbe()
        self.window_items = window_items
        self.window_bytes = window_bytes
        self.ack_timeout_s = ack_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.max_offline_backoff_s = max_offline_backoff_s
        self.progress = Progress()
        self.tick_hooks: list[Callable[[Transport], None]] = []
        # When the tick hooks next need a round (drain clock; None: not for now). While a hook
        # has no due time here, the online drain wakes every IDLE_POLL_S for it, as it always did.
        self.tick_due: list[Callable[[], float | None]] = []
        self.pacing = Pacing(window_bytes, ack_timeout_s)

        self.window: dict[str, Flight] = {}
        self._unacked_bytes = 0
        self._completes: list[str] = []
        self._completed_unflushed: set[str] = set()
        self._last_flush = clock.monotonic()
        self._claim_after = 0.0
        self._nothing_claimed = False
        self._offline_delay = 1.0
        self._next_connect = 0.0
        self._link_down = threading.Event()
        self.wakeup = _Wakeup(transport)
        transport.on_connection_change(self._on_link)

    # -- the loop --------------------------------------------------------------------------

    def wake(self) -> None:
        """Something new was queued (or a sync was asked for): claim without waiting."""
        self._claim_after = 0.0
        self._nothing_claimed = False
        self.wakeup.set()

    def _on_link(self, connected: bool) -> None:
        # Runs on the transport's thread: only flags, the drain thread does the work.
        if not connected:
            self._link_down.set()
        self.wakeup.set()

    def step(self) -> None:
        """One round: connect if needed, fill the window, send, read acks, flush."""
        if self._link_down.is_set():
            self._link_down.clear()
            self._drop_window("link went down")
        if not self.transport.is_connected and not self._try_connect():
            self.progress.online = False
            self._flush(force=True)
            self.clock.wait(self.wakeup, max(0.05, self._next_connect - self.clock.monotonic()))
            self.wakeup.clear()
            return
        self.progress.online = True
        self.progress.offline_reason = None
        for hook in self.tick_hooks:
            hook(self.transport)
        self._fill()
        self._pump()
        events = self.transport.drain_events()
        if not events:
            event = self.transport.next_event(timeout=self._wait_s())
            self.wakeup.clear()
            events = ([event] if event is not None else []) + self.transport.drain_events()
        for ev in events:
            self._on_event(ev)
        self.pacing.sample(self.clock.monotonic(), busy=self._unacked_bytes > 0)
        self._expire()
        self._flush()

    def _wait_s(self) -> float:
        """How long nothing needs this thread: until the first deadline, flush, claim or tick."""
        now = self.clock.monotonic()
        until = now + IDLE_CEILING_S
        if not self.window:
            until = min(until, max(now, self._claim_after))
        elif self._claim_after > now and len(self.window) < self.window_items:
            until = min(until, self._claim_after)
        for flight in self.window.values():
            if flight.waiting_on is None:
                until = min(until, flight.deadline)
        if self._completes or any(f.dirty for f in self.window.values()):
            until = min(until, self._last_flush + FLUSH_INTERVAL_S)
        if len(self.tick_due) < len(self.tick_hooks):
            until = min(until, now + IDLE_POLL_S)
        for due in self.tick_due:
            at = due()
            if at is not None:
                until = min(until, at)
        return max(0.0, until - now)

    def _try_connect(self) -> bool:
        now = self.clock.monotonic()
        if now < self._next_connect:
            return False
        if self.probe.network_up() is False:
            ok = False
            self.progress.offline_reason = "no network (NetworkManager reports none)"
        else:
            try:
                self.transport.connect(timeout=self.connect_timeout_s)
                ok = True
            except TransportError as exc:
                log.info("cloud not reachable: %s", exc)
                self.progress.offline_reason = getattr(
                    self.transport, "offline_reason", None
                ) or str(exc)
                ok = False
        if ok:
            self._offline_delay = 1.0
            self.pacing.reset()
            self._claim_after = 0.0
            return True
        self._next_connect = self.clock.monotonic() + self._offline_delay
        self._offline_delay = min(self.max_offline_backoff_s, self._offline_delay * 2)
        return False

    def close(self) -> None:
        """Record what is known and hand every item in flight back to the outbox."""
        self._drop_window("drain stopped")

    # -- claiming and building -------------------------------------------------------------

    def _fill(self) -> None:
        room = self.window_items - len(self.window)
        if room <= 0 or self.clock.monotonic() < self._claim_after:
            return
        if self.window and room < max(1, self.window_items // 4):
            return  # claim in batches: each claim is a write transaction
        if self._unacked_bytes >= self.pacing.window:
            return
        allowed = self.policy.allowance(self.probe.link_type())
        items = self.outbox.claim(room, kinds=allowed.kinds, max_priority=allowed.max_priority)
        self._nothing_claimed = not items
        if not items:
            # Nothing due: sleep until the next item is (a backoff, a deferral), or a wake().
            self._claim_after = self.clock.monotonic() + self._idle_claim_wait(allowed)
            return
        # Ingest already acknowledged these (the ack came late, while they were back in the
        # outbox); the next flush marks them done: sending them again would only fetch
        # another "complete".
        self._build([i for i in items if i.item_id not in self._completed_unflushed])

    def _idle_claim_wait(self, allowed: Allowance) -> float:
        """Seconds until a claim may find something: the next due item, and no longer than
        ``POLICY_POLL_S`` while the policy holds back items that are due."""
        now = self.wall_clock()
        due_at = self.outbox.next_due_at(allowed.kinds, max_priority=allowed.max_priority)
        wait = IDLE_CEILING_S if due_at is None else due_at - now
        if allowed != EVERYTHING and wait > POLICY_POLL_S:
            held_at = self.outbox.next_due_at()
            if held_at is not None and held_at - now < wait:
                wait = max(POLICY_POLL_S, held_at - now)
        return min(IDLE_CEILING_S, max(IDLE_POLL_S, wait))

    def _build(self, items: list[OutboxItem]) -> None:
        unready: list[str] = []
        defer: list[str] = []
        dead: list[tuple[str, str]] = []
        metas = [i for i in items if i.kind is ItemKind.METADATA]
        files = [i for i in items if i.kind is not ItemKind.METADATA]
        deadline = math.inf  # the clock starts when a frame goes out (_pump)
        for item in metas:
            try:
                meta = payloads.capture_meta(
                    self.db, self.device_id, item.item_id, item.ref_id, self.vision
                )
            except payloads.Unready:
                unready.append(item.item_id)
                continue
            except payloads.Undeliverable as exc:
                dead.append((item.item_id, str(exc)))
                continue
            self.window[item.item_id] = Flight(item, [meta], deadline)
        media_ids = [i.ref_id for i in files]
        gates = self.outbox.metadata_gates(media_ids)
        rows = self.media.get_many(media_ids)
        for item in files:
            gate = gates.get(item.ref_id)
            meta_id = item_id_for(ItemKind.METADATA, gate.event_id) if gate else None
            waiting_on = None
            if gate is None:
                pass  # no media row: _media_flight says so, and the item dies with the reason
            elif gate.metadata_state is OutboxState.DEAD:
                dead.append((item.item_id, f"its event's metadata {meta_id} is dead"))
                continue
            elif meta_id in self.window:
                waiting_on = meta_id
            elif not gate.metadata_uploaded and meta_id not in self._completed_unflushed:
                defer.append(item.item_id)
                continue
            try:
                flight = self._media_flight(item, rows.get(item.ref_id), deadline)
            except payloads.Undeliverable as exc:
                dead.append((item.item_id, str(exc)))
                continue
            except ProtocolError as exc:
                dead.append((item.item_id, f"cannot cut into chunks: {exc}"))
                continue
            flight.waiting_on = waiting_on
            self.window[item.item_id] = flight
        if unready:
            self.outbox.defer(unready, UNREADY_DELAY_S, OutboxState.WAITING_CLASSIFICATION)
        if defer:
            self.outbox.defer(defer, UNREADY_DELAY_S, OutboxState.WAITING_METADATA)
        for item_id, reason in dead:
            log.error("outbox item %s is undeliverable: %s", item_id, reason)
            self.outbox.dead(item_id, reason)
            self.progress.items_dead += 1

    def _media_flight(self, item: OutboxItem, row: MediaRow | None, deadline: float) -> Flight:
        kind = "thumbnail" if item.kind is ItemKind.THUMBNAIL else "full"
        media = payloads.media_file(self.data_dir, row, kind, item.ref_id)
        limit = self.transport.max_payload_bytes
        chunks = protocol.split_media(
            media.data,
            max_payload_bytes=limit,
            device_id=self.device_id,
            item_id=item.item_id,
            media_id=item.ref_id,
            kind=media.kind,  # type: ignore[arg-type]
            file_mediatype=media.mediatype,
        )
        first = next(chunks)
        if media.sha256 and first.sha256 != media.sha256:
            raise payloads.Undeliverable(f"{kind} file of {item.ref_id} changed on disk")
        start = 0
        if first.count > 1:
            if item.chunk_size != first.chunk_size:
                self.outbox.set_chunking(item.item_id, first.chunk_size)
            else:
                start = min(item.acked_chunks, first.count - 1)
        frames: list[CaptureMeta | MediaChunk] = [first, *chunks]
        flight = Flight(item, frames, deadline, next=start, contiguous=start)
        flight.acked = set(range(start))
        return flight

    # -- sending ---------------------------------------------------------------------------

    def _pump(self) -> None:
        for flight in list(self.window.values()):
            if flight.waiting_on is not None:
                continue
            while flight.next < len(flight.frames):
                if self._unacked_bytes >= self.pacing.window and self._unacked_bytes > 0:
                    return
                frame = flight.frames[flight.next]
                size = len(frame.data) if isinstance(frame, MediaChunk) else META_OVERHEAD
                try:
                    self.transport.send(frame)
                except NotConnected:
                    return
                except PayloadTooLarge as exc:
                    # The broker's limit shrank since the item was cut: cut it again next time.
                    self._forget(flight)
                    self._park_waiters(flight.item.item_id)
                    self.outbox.retry_later(flight.item.item_id, str(exc))
                    self._requeued()
                    break
                flight.unacked[flight.next] = size
                self._unacked_bytes += size
                flight.deadline = self._deadline()
                flight.next += 1
                if isinstance(frame, MediaChunk):
                    self.policy.sent(size)

    # -- acknowledgements -------------------------------------------------------------------

    def _on_event(self, event: Ack | ErrorReply) -> None:
        flight = self.window.get(event.item_id)
        if isinstance(event, ErrorReply):
            self._on_error(event, flight)
            return
        if event.chunk == "complete":
            # A repeated "complete" still ends a flight in the window: the item may have been
            # claimed and sent again after its first ack (which found it back in the outbox).
            if flight is not None:
                self.pacing.on_acked(sum(flight.unacked.values()))
                self._forget(flight)
                self.progress.items_done += 1
                self.progress.bytes_done += flight.item.bytes
                self._release_waiters(event.item_id)
            if event.item_id not in self._completed_unflushed:
                self._completes.append(event.item_id)
                self._completed_unflushed.add(event.item_id)
            return
        if flight is None:
            return
        index = int(event.chunk)
        freed = flight.unacked.pop(index, 0)
        self._unacked_bytes -= freed
        self.pacing.on_acked(freed)
        flight.acked.add(index)
        if flight.unacked or flight.next >= len(flight.frames):
            flight.deadline = self._deadline()
        else:
            flight.deadline = math.inf  # the rest waits for room in the window, not for ingest
        while flight.contiguous in flight.acked:
            flight.contiguous += 1
            flight.dirty = True

    def _on_error(self, event: ErrorReply, flight: Flight | None) -> None:
        item_id = event.item_id
        reason = f"ingest: {event.reason}: {event.detail}"[:500]
        if flight is not None:
            self._forget(flight)
            self._park_waiters(item_id)
        if event.restart:
            self.outbox.reset_chunks(item_id)
        if not event.retryable:
            log.error("ingest refused %s for good: %s", item_id, reason)
            self.outbox.dead(item_id, reason)
            self.progress.items_dead += 1
        elif flight is not None:
            self.outbox.retry_later(item_id, reason)
            self.progress.retries += 1
            self._requeued()

    def _release_waiters(self, meta_id: str) -> None:
        for flight in self.window.values():
            if flight.waiting_on == meta_id:
                flight.waiting_on = None  # its deadline starts when its first frame goes

    def _park_waiters(self, meta_id: str) -> None:
        """The metadata failed: items behind it go back and wait for its next attempt."""
        waiting = [f for f in self.window.values() if f.waiting_on == meta_id]
        for flight in waiting:
            self._forget(flight)
        if waiting:
            self.outbox.defer(
                [f.item.item_id for f in waiting], UNREADY_DELAY_S, OutboxState.WAITING_METADATA
            )
            self._requeued()

    def _forget(self, flight: Flight) -> None:
        self.window.pop(flight.item.item_id, None)
        self._unacked_bytes -= sum(flight.unacked.values())
        flight.unacked.clear()
        if flight.dirty:
            self.outbox.ack_chunks(flight.item.item_id, flight.contiguous)
            flight.dirty = False

    def _requeued(self) -> None:
        # An item went back to the outbox with a due time: the next claim that finds nothing
        # reads the earliest due time again (an idle drain sleeps until then).
        self._claim_after = 0.0

    def _deadline(self) -> float:
        """The ack deadline of a frame sent now: the timeout, after the bytes ahead of it."""
        ahead = self.pacing.queue_s(self._unacked_bytes)
        return self.clock.monotonic() + self.ack_timeout_s + ahead

    def _expire(self) -> None:
        now = self.clock.monotonic()
        late = [f for f in self.window.values() if f.waiting_on is None and f.deadline < now]
        for flight in late:
            self._forget(flight)
            self._park_waiters(flight.item.item_id)
            delay = self.outbox.retry_later(
                flight.item.item_id, f"no ack within {self.ack_timeout_s:g} s"
            )
            self.progress.retries += 1
            self._requeued()
            log.warning("no ack for %s; retrying in %.0f s", flight.item.item_id, delay)

    # -- bookkeeping -----------------------------------------------------------------------

    def _flush(self, force: bool = False) -> None:
        due = self.clock.monotonic() - self._last_flush >= FLUSH_INTERVAL_S
        if not (force or due or len(self._completes) >= FLUSH_MAX_COMPLETES):
            return
        self._last_flush = self.clock.monotonic()
        for flight in self.window.values():
            if flight.dirty:
                self.outbox.ack_chunks(flight.item.item_id, flight.contiguous)
                flight.dirty = False
        if self._completes:
            self.outbox.complete(self._completes)
            stamp = datetime.fromtimestamp(self.wall_clock(), UTC).isoformat()
            self.kv.put(KV_LAST_SYNC, stamp)
            self._completes = []
            self._completed_unflushed.clear()
        self.policy.save()

    def _drop_window(self, why: str) -> None:
        self._flush(force=True)
        flights = list(self.window.values())
        for flight in flights:
            self._forget(flight)
        if flights:
            self.outbox.release([f.item.item_id for f in flights])
            log.info("%s: %d items back to the outbox", why, len(flights))
        self._unacked_bytes = 0
        self._flush(force=True)

    def idle(self) -> bool:
        """Nothing in flight, nothing unflushed, and the last claim found nothing due."""
        return not self.window and not self._completes and self._nothing_claimed


def last_sync_at(db: Source) -> str | None:
    """When ingest last acknowledged an item (ISO 8601, UTC), or None if it never did."""
    return KeyValues(db).get(KV_LAST_SYNC)


class _Wakeup(threading.Event):
    """The drain's wake-up: setting it also ends the drain's wait on the transport."""

    def __init__(self, transport: Transport) -> None:
        super().__init__()
        self._transport = transport

    def set(self) -> None:
        super().set()
        self._transport.interrupt()


class DrainThread(threading.Thread):
    """The agent's background drain: runs ``Drain.step`` until stopped."""

    def __init__(self, drain: Drain) -> None:
        super().__init__(name="uplink-drain", daemon=True)
        self.drain = drain
        self._stop_flag = threading.Event()

    def run(self) -> None:
        while not self._stop_flag.is_set():
            try:
                self.drain.step()
            except Exception:
                # A database hiccup must not end uploads for good; the outbox keeps the truth.
                log.exception("drain step failed")
                self.drain.clock.wait(self._stop_flag, 2.0)
        try:
            self.drain.close()
        except Exception:
            log.exception("could not hand in-flight items back")

    def stop(self, timeout: float = 10.0) -> None:
        self._stop_flag.set()
        self.drain.wakeup.set()
        self.join(timeout)
