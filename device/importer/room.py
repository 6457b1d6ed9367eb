"""The agent's import room: imports asked by ``camtrap import``, and cards as they are mounted.

The agent owns the database while it runs, so every import on a running trap happens here, on
one thread, through the same store door and commit listeners as the trap's own captures: an
imported event is classified by the agent's vision worker and sent by its uplink.

- **Requests:** ``camtrap import`` leaves a request file (``requests``); the room runs it
  under the id the command watches. A request that cannot start gets a ``.refused`` file
  beside it with the one-line reason, which the command prints.
- **Cards** (``import.watch``): the udev rule mounts an inserted card read-only under
  ``import.watch_roots``; the room notices the new mount (``mounts.CardWatcher``) and imports
  it into the trap's own deployment. A card inserted twice adds nothing the second time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from device.config import Settings
from device.contracts.durable import atomic_write
from device.importer.engine import Importer, ImportRefused, ImportRequest, ImportStore
from device.importer.requests import pending_requests
from device.store.store import CommitResult, free_bytes

log = logging.getLogger("camtrap.import")

REFUSED_SUFFIX = ".refused"
STOP_CHECK_S = 0.5  # a stop waits at most this long for the room to notice it


class MountedCard(Protocol):
    @property
    def mount_point(self) -> Path: ...


class MountWatcher(Protocol):
    """``mounts.CardWatcher``: the cards mounted since it was last asked."""

    def poll(self) -> Sequence[MountedCard]: ...

    def wait(self, timeout: float) -> bool: ...


class ImportRoom(threading.Thread):
    def __init__(
        self,
        settings: Settings,
        store: ImportStore,
        on_committed: Callable[[CommitResult], None],
        *,
        cards: MountWatcher | None = None,
    ) -> None:
        super().__init__(name="import", daemon=True)
        self.settings = settings
        self.store = store
        self.on_committed = on_committed
        self.cards = cards
        self._stopping = threading.Event()
        self.imports_run = 0

    def request_stop(self) -> None:
        """Stop after the file being read: the import records itself interrupted, and the
        next run resumes it. Returns at once (``stop`` also waits for the room)."""
        self._stopping.set()

    def stop(self, timeout: float | None = None) -> None:
        self.request_stop()
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        interval = self.settings.import_.watch_interval_s
        while not self._stopping.is_set():
            try:
                self.poll_once()
            except Exception:  # the room must outlive any one bad import
                log.exception("import room: a poll failed")
            self._pause(interval)

    def _pause(self, interval: float) -> None:
        """Until the next look: ``interval``, cut short by a change of the mount table, so a
        card swapped for another at the same mount point is seen between the two (the kernel
        gives the new mount the old one's id and device number)."""
        if self.cards is None:
            self._stopping.wait(interval)
            return
        deadline = time.monotonic() + interval
        while not self._stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or self.cards.wait(min(left, STOP_CHECK_S)):
                return

    def poll_once(self) -> int:
        """Run every waiting request, then every newly mounted card; returns imports run."""
        ran = 0
        data_dir = self.settings.storage.data_dir
        for path, request in pending_requests(data_dir):
            if self._stopping.is_set():
                return ran
            # Removed once run, whatever the run did: a request that fails (one left by an
            # agent killed mid-import names an import already begun) is tried once, not at
            # every poll ahead of every later request. The file stays while it runs: the
            # watching command takes its absence with no row for a run that never began.
            try:
                if request is not None:
                    self._run(request, refusal=path.with_suffix(REFUSED_SUFFIX))
                    ran += 1
            finally:
                path.unlink(missing_ok=True)
        if self.cards is not None:
            for card in self.cards.poll():
                mount = card.mount_point
                if self._stopping.is_set():
                    return ran
                deployment = self.settings.device.deployment_id
                if not deployment:
                    log.error(
                        "card at %s not imported: this trap has no deployment"
                        " (device.deployment_id); run camtrap import %s --deployment ID",
                        mount,
                        mount,
                    )
                    continue
                log.warning("card mounted at %s: importing it", mount)
                self._run(ImportRequest(mount, deployment, requested_by="card"))
                ran += 1
        return ran

    def _run(self, request: ImportRequest, refusal: Path | None = None) -> None:
        data_dir = self.settings.storage.data_dir
        importer = Importer(
            self.settings,
            self.store,
            free_bytes=lambda: free_bytes(data_dir),
            on_committed=self.on_committed,
            should_stop=self._stopping.is_set,
        )
        self.imports_run += 1
        try:
            outcome = importer.run(request)
        except ImportRefused as exc:
            log.error("import of %s refused: %s", request.source, exc)
            if refusal is not None:
                atomic_write(refusal, str(exc).encode())
            return
        except OSError as exc:  # the data dir failed under us: the store reports it
            log.error("import of %s stopped: %s", request.source, exc)
            return
        log.warning("import of %s: %s", request.source, outcome.message)
