"""The classification worker: the door from the store to vision and back.

It runs on its own thread, after capture and storage, so inference never delays a trigger.
For each closed event it classifies the stored frames, makes their thumbnails and hands the
verdict to the store (``MediaStore.record_verdict``), which records it with the blank-media
policy and the upload order in one transaction. Events closed but not yet classified when
the agent stopped are picked up again on start.

A blank event is never deleted: its metadata row (observationType ``blank``) always stays;
``vision.blank_media_policy`` decides what its frames become: held whole until retention needs
the room, sent last and never over a metered link (``defer``, the default: a verdict of this
worker destroys nothing), kept and sent last (``keep``), reduced to a thumbnail
(``thumbnail``) or removed (``delete``); ``device.store.verdicts`` applies it.

Low battery pauses it (``pause``, the second shedding step, ``device.power.shedding``): events
submitted meanwhile are held, still ``closed`` in the store, and none is classified until
``resume``, which queues them all again. A stop while paused loses nothing either: the next
start's ``catch_up`` finds them in the store.

The serving engine changes only through ``serve`` (start-up load, OTA swap, rollback).

The worker owns the deployment's site memory (``site_memory.py``): it lends it to whichever
engine serves (before each event, since an OTA swap may have changed the engine), feeds it the
frames of each event that show the empty scene, loads it when the thread starts and saves it
now and then (the memory's own rule: not every frame, SD cards die from writes) and at stop.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from device.clock import local_now
from device.store.db import DatabaseError
from device.store.media import MediaRow, StoredFile
from device.store.thumbs import make_thumbnail
from device.store.verdicts import EventToClassify, Verdict
from device.store.vocabulary import MediaState
from device.vision.engine import (
    EventFrame,
    EventVerdict,
    ObservationRow,
    ServingEngine,
    remember_empty_scene,
    shows_empty_scene,
)
from device.vision.site_memory import SiteMemory, site_of

if TYPE_CHECKING:
    from device.config import Settings

log = logging.getLogger("camtrap.vision")

LORES_KEPT = 64  # frames; a burst's analysis planes wait here until its event is classified
_STOP = "__stop__"


class VerdictStore(Protocol):
    """What the worker uses of the store (``MediaStore`` is one)."""

    @property
    def data_dir(self) -> Path: ...

    def events_awaiting_classification(self) -> list[str]: ...

    def event_to_classify(self, event_id: str) -> EventToClassify | None: ...

    def write_thumbnail(self, frame: MediaRow, data: bytes) -> StoredFile: ...

    def record_verdict(self, verdict: Verdict) -> list[Path]: ...


@dataclass
class VisionStats:
    events: int = 0
    animals: int = 0
    blanks: int = 0
    humans: int = 0
    vehicles: int = 0
    unclassified: int = 0
    errors: int = 0


class ClassificationWorker(threading.Thread):
    def __init__(
        self,
        settings: Settings,
        store: VerdictStore,
        engine: ServingEngine | None,
        *,
        clock: Callable[[], datetime] | None = None,
        site_memory: SiteMemory | None = None,
    ) -> None:
        """``clock`` gives the classification timestamp (local time with its offset);
        ``site_memory`` is the deployment's memory of its empty scene (None: no novelty)."""
        super().__init__(name="vision", daemon=True)
        self.settings = settings
        self.store = store
        self.site_memory = site_memory
        self.clock = clock or (lambda: local_now(settings.device.timezone))
        self._engine = engine
        self._engine_lock = threading.Lock()
        self.queue: queue.Queue[str] = queue.Queue()
        self.stats = VisionStats()
        self._lores: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lores_lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self._pause_lock = threading.Lock()
        self._paused = False
        self._held: list[str] = []  # submitted while paused, in order

    # -- the serving engine ----------------------------------------------------------------------

    def serve(self, engine: ServingEngine | None) -> None:
        """The one way to change the serving engine (start-up load, OTA swap, rollback)."""
        with self._engine_lock:
            self._engine = engine

    @property
    def engine(self) -> ServingEngine | None:
        with self._engine_lock:
            return self._engine

    # -- fed by other threads ------------------------------------------------------------------

    def remember_lores(self, media_id: str, lores: np.ndarray | None) -> None:
        if lores is None:
            return
        with self._lores_lock:
            self._lores[media_id] = lores
            while len(self._lores) > LORES_KEPT:
                self._lores.popitem(last=False)

    def submit(self, event_id: str) -> None:
        self._idle.clear()
        self.queue.put(event_id)

    def catch_up(self) -> int:
        """Queue every event that was closed but never classified (e.g. before a crash)."""
        waiting = self.store.events_awaiting_classification()
        for event_id in waiting:
            self.submit(event_id)
        return len(waiting)

    def wait_idle(self, timeout: float) -> bool:
        """Until nothing is left that it would classify now (held events do not count)."""
        return self._idle.wait(timeout)

    # -- low-battery shedding ----------------------------------------------------------------------

    def pause(self) -> None:
        """Classify nothing more (the event in progress finishes); hold what is submitted."""
        with self._pause_lock:
            self._paused = True

    def resume(self) -> None:
        """Classify again, the held events first."""
        with self._pause_lock:
            self._paused = False
            held, self._held = self._held, []
        for event_id in held:
            self.submit(event_id)

    @property
    def paused(self) -> bool:
        with self._pause_lock:
            return self._paused

    @property
    def held(self) -> int:
        """Events waiting for ``resume``."""
        with self._pause_lock:
            return len(self._held)

    def _hold(self, event_id: str) -> bool:
        with self._pause_lock:
            if self._paused and event_id not in self._held:
                self._held.append(event_id)
            return self._paused

    def stop(self, timeout: float | None = None) -> None:
        self.queue.put(_STOP)
        self.join(timeout)

    # -- the thread -------------------------------------------------------------------------------

    def run(self) -> None:
        if self.site_memory is not None:
            self.site_memory.load()
        try:
            self._serve_queue()
        finally:
            if self.site_memory is not None and self.site_memory.dirty:
                self.site_memory.save()

    def _serve_queue(self) -> None:
        while True:
            event_id = self.queue.get()
            if event_id == _STOP:
                return
            if self._hold(event_id):
                if self.queue.empty():
                    self._idle.set()
                continue
            try:
                self._handle(event_id)
            except (OSError, DatabaseError) as exc:
                # Storage trouble: the event stays 'closed' and catch_up retries it later.
                self.stats.errors += 1
                log.error("classifying event %s failed: %s", event_id, exc)
            except Exception:  # a bug in one event must not stop classification
                self.stats.errors += 1
                log.exception("classifying event %s failed", event_id)
            if self.queue.empty():
                self._idle.set()

    def _handle(self, event_id: str) -> None:
        todo = self.store.event_to_classify(event_id)
        if todo is None:
            return
        frames = [
            EventFrame(
                media_id=m.media_id,
                jpeg_path=self._stored_file(m),
                lores=self._take_lores(m.media_id),
            )
            for m in todo.media
        ]
        thumbs = self._thumbnails(todo.media)
        engine = self.engine
        # A photo imported from a trail camera's card shows another camera's scene: the trap's
        # own memory of its empty scene neither judges it nor learns from it.
        own_scene = todo.event.import_id is None
        self._lend_site_memory(engine, own_scene)
        verdict = None if engine is None else engine.classify_event(frames)
        if (
            engine is not None
            and verdict is not None
            and shows_empty_scene(verdict, todo.event.capture_method)
        ):
            for frame in frames:
                if frame.lores is not None:
                    engine.learn_background(frame.lores)
        if verdict is not None and own_scene:
            self._feed_site_memory(event_id, verdict, todo.event.capture_method)
        removed = self.store.record_verdict(
            Verdict(
                event_id=event_id,
                observations=(
                    verdict.observations
                    if verdict is not None
                    else [ObservationRow.unclassified("", {"reason": "no model pack is serving"})]
                ),
                blank=verdict is not None and verdict.is_blank,
                blank_score=None if verdict is None else verdict.blank_score,
                thumbnails=thumbs,
                classified_at=self.clock(),
            )
        )
        for path in removed:
            path.unlink(missing_ok=True)
        self._count(verdict)

    def _lend_site_memory(self, serving: ServingEngine | None, own_scene: bool = True) -> None:
        """The serving engine judges novelty against the deployment's memory (or none, when
        vision.site_memory was turned off, or the event is not of the trap's own scene)."""
        if serving is not None:
            lend = self.settings.vision.site_memory and own_scene
            serving.use_site_memory(self.site_memory if lend else None)

    def _feed_site_memory(self, event_id: str, verdict: EventVerdict, capture_method: str) -> None:
        memory = self.site_memory
        if memory is None or not self.settings.vision.site_memory:
            return
        memory.move_to(site_of(self.settings))  # a relocation starts the memory over
        remember_empty_scene(memory, event_id, verdict, capture_method)
        memory.maybe_save()

    def _stored_file(self, frame: MediaRow) -> Path | None:
        if frame.state is not MediaState.STORED or not frame.path:
            return None
        return self.store.data_dir / frame.path

    def _take_lores(self, media_id: str) -> np.ndarray | None:
        with self._lores_lock:
            return self._lores.pop(media_id, None)

    def _thumbnails(self, media: list[MediaRow]) -> dict[str, StoredFile]:
        """media_id -> the thumbnail just written for it (the store records it)."""
        made: dict[str, StoredFile] = {}
        for m in media:
            source = self._stored_file(m)
            if source is None:
                continue
            try:
                data = make_thumbnail(source)
            except Exception as exc:
                log.warning("no thumbnail for %s: %s", m.media_id, exc)
                continue
            made[m.media_id] = self.store.write_thumbnail(m, data)
        return made

    def _count(self, verdict: EventVerdict | None) -> None:
        self.stats.events += 1
        kind = "unclassified" if verdict is None else verdict.observations[0].observation_type
        if verdict is not None and verdict.is_blank:
            self.stats.blanks += 1
        elif kind == "animal":
            self.stats.animals += 1
        elif kind == "human":
            self.stats.humans += 1
        elif kind == "vehicle":
            self.stats.vehicles += 1
        else:
            self.stats.unclassified += 1
