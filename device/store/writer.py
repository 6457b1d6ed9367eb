"""The store's single writer thread: frames in, batched durable commits out.

Capture only ever calls ``submit`` (a queue put), so a slow card never delays a trigger.
Batching keeps the number of fsync'd SQLite commits low, which is what wears SD cards.

While the store writes to the card the thread blocks on its queue and wakes only for work;
while it spools to RAM (the data dir unusable) it also wakes every
``storage.probe_interval_s`` to try the card again, which is all recovery needs.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from device.capture.types import CapturedFrame, EventClosed
from device.store.store import CommitResult, MediaStore

log = logging.getLogger("camtrap.store")

_STOP = object()


@dataclass
class WriterStats:
    stored: int = 0
    failed: int = 0
    events_closed: int = 0
    spooled: int = 0


class StoreWriter(threading.Thread):
    def __init__(
        self,
        store: MediaStore,
        *,
        batch_max: int,
        on_committed: Callable[[CommitResult], None] | None = None,
    ) -> None:
        super().__init__(name="store-writer", daemon=True)
        self.store = store
        self.batch_max = batch_max
        self.on_committed = on_committed
        self.queue: queue.Queue[object] = queue.Queue()
        self.stats = WriterStats()

    @property
    def idle_wake_s(self) -> float | None:
        """How long the queue may stay quiet before the card is probed; None: no probe."""
        if self.store.db is not None:
            return None
        return self.store.settings.storage.probe_interval_s

    def submit(self, item: CapturedFrame | EventClosed) -> None:
        self.queue.put(item)

    def stop(self, timeout: float | None = None) -> None:
        """Commit everything already submitted, then end."""
        self.queue.put(_STOP)
        self.join(timeout)

    def run(self) -> None:
        while True:
            try:
                first = self.queue.get(timeout=self.idle_wake_s)
            except queue.Empty:
                self.store.maybe_recover()
                continue
            batch: list[CapturedFrame | EventClosed] = []
            stop = first is _STOP
            if not stop:
                batch.append(first)  # type: ignore[arg-type]
            while not stop and len(batch) < self.batch_max:
                try:
                    nxt = self.queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                else:
                    batch.append(nxt)  # type: ignore[arg-type]
            if batch:
                self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[CapturedFrame | EventClosed]) -> None:
        try:
            result = self.store.commit(batch)
        except Exception:  # the writer must outlive any one bad batch
            log.exception("commit of %d items failed; they are lost from this run", len(batch))
            return
        for media_id in result.committed_media:
            log.info("stored media", extra={"media_id": media_id})
        for media_id in result.failed_media:
            log.warning("failed media recorded", extra={"media_id": media_id})
        if result.spooled:
            log.warning("spooled %d items to fallback", result.spooled)
        self.stats.stored += len(result.committed_media)
        self.stats.failed += len(result.failed_media)
        self.stats.events_closed += len(result.closed_events)
        self.stats.spooled += result.spooled
        if self.on_committed is not None:
            self.on_committed(result)
