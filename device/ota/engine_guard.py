"""The engine the classification worker sees: the serving engine, swappable from any thread.

The worker calls ``classify_event`` on its own thread. A swap takes the same lock, so it waits
for an event in progress to finish and the old engine is never used again once ``swap``
returns (an interpreter is not thread-safe, and nothing may touch it from two threads). A new
pack's first ``trial`` events run on probation: if one raises, the guard goes back to the
previous engine at once, classifies that event with it, and tells the OTA service (which moves
the ``current`` symlink back). After ``trial`` good events the previous engine is dropped.

The worker holds the guard as its serving engine (``ClassificationWorker.serve(guard)``): it
offers exactly what the worker uses of a ``VisionEngine`` (``classify_event``,
``learn_background``, ``use_site_memory``) and what the heartbeat reports (``classified_by``),
each answered by the engine serving at that moment. The site memory the worker lends is kept
and handed to every engine the guard serves later (a swap, a rebuild, a rollback), so no event
is judged without it. Everything else of the engine is read from ``guard.engine``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from device.vision.engine import EventFrame, EventVerdict, VisionEngine
    from device.vision.site_memory import SiteMemory

log = logging.getLogger("camtrap.ota")

TrialCallback = Callable[[bool, str], None]  # (passed, detail); runs on the worker thread


class EngineGuard:
    def __init__(self, engine: VisionEngine | None = None) -> None:
        self._lock = threading.Lock()
        self._engine = engine
        self._fallback: VisionEngine | None = None
        self._trial_left = 0
        self._on_trial: TrialCallback | None = None
        self._memory_lent = False  # until the worker lends one, engines keep their own
        self._site_memory: SiteMemory | None = None

    @property
    def engine(self) -> VisionEngine | None:
        with self._lock:
            return self._engine

    @property
    def classified_by(self) -> str | None:
        """``name@version`` of the pack serving now; None once a failed trial left none."""
        with self._lock:
            return self._engine.classified_by if self._engine is not None else None

    @property
    def in_trial(self) -> bool:
        with self._lock:
            return self._trial_left > 0

    def swap(
        self, engine: VisionEngine, trial: int = 0, on_trial: TrialCallback | None = None
    ) -> VisionEngine | None:
        """Serve ``engine`` from now on; returns the engine it replaced."""
        with self._lock:
            old = self._engine
            self._engine = self._lend(engine)
            self._fallback = old if trial > 0 else None
            self._trial_left = trial
            self._on_trial = on_trial
        if trial > 0 and on_trial is not None and old is None:
            log.warning("new pack on trial with no previous engine to fall back to")
        return old

    def replace(self, engine: VisionEngine) -> None:
        """Serve a rebuilt engine of the same pack (new thresholds); a trial carries on."""
        with self._lock:
            self._engine = self._lend(engine)

    def rearm(self, fallback: VisionEngine, trial: int, on_trial: TrialCallback) -> None:
        """Resume a trial after a restart: the serving engine is on probation again."""
        with self._lock:
            self._fallback, self._trial_left, self._on_trial = fallback, trial, on_trial

    def end_trial(self, passed: bool) -> None:
        """End probation from outside (e.g. the agent restarted into a trial it cannot run)."""
        with self._lock:
            if not passed and self._fallback is not None:
                self._engine = self._fallback
            self._fallback, self._trial_left, self._on_trial = None, 0, None

    def classify_event(self, frames: Sequence[EventFrame]) -> EventVerdict:
        with self._lock:
            engine = self._engine
            if engine is None:
                raise RuntimeError("no model pack is serving")
            if self._trial_left <= 0:
                return engine.classify_event(frames)
            callback = self._on_trial
            try:
                verdict = engine.classify_event(frames)
            except Exception as exc:
                detail = f"{type(exc).__name__}: {exc}"[:500]
                log.error("new pack failed on a real event, rolling back: %s", detail)
                self._engine, self._fallback = self._fallback, None
                self._trial_left, self._on_trial = 0, None
                if callback is not None:
                    callback(False, detail)
                if self._engine is None:
                    raise
                return self._engine.classify_event(frames)
            self._trial_left -= 1
            if self._trial_left == 0:
                self._fallback, self._on_trial = None, None
                if callback is not None:
                    callback(True, "")
            return verdict

    def use_site_memory(self, memory: SiteMemory | None) -> None:
        """The deployment's site memory, for the engine serving now and every later one."""
        with self._lock:
            self._memory_lent, self._site_memory = True, memory
            for engine in (self._engine, self._fallback):
                if engine is not None:
                    engine.use_site_memory(memory)

    def _lend(self, engine: VisionEngine) -> VisionEngine:
        if self._memory_lent:
            engine.use_site_memory(self._site_memory)
        return engine

    def learn_background(self, lores: np.ndarray) -> None:
        """The worker's empty-scene frames teach the serving engine's motion model."""
        with self._lock:
            if self._engine is not None:
                self._engine.learn_background(lores)
