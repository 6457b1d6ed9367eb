"""A monotonic clock for tests: time moves only when the test moves it.

``ManualClock`` satisfies ``device.clock.MonotonicClock``. Code under test calls ``wait(event,
timeout)``; the thread stays parked until its event is set or the test carries the clock past
its deadline. The test either moves time itself::

    clock.advance(settings.capture.cooldown_s)

or lets the clock jump from one parked deadline to the next until something holds::

    loop.trigger("pir")
    clock.run_until(loop.is_idle)  # every burst interval passes at once, none is slept

Only the test's patience is real time (``timeout``): it bounds how long the test waits for the
code under test to reach its next wait, so a broken loop fails the test instead of hanging it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

# How soon a parked thread notices that another thread set its event. Setting an Event cannot
# notify the clock, so a parked thread looks again this often (real time, never fake time).
NOTICE_S = 0.001


@dataclass(eq=False)
class _Parked:
    event: threading.Event
    deadline: float | None  # clock time; None: only the event ends the wait


class ManualClock:
    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._parked: list[_Parked] = []
        self._cond = threading.Condition()

    # -- the MonotonicClock the code under test sees ----------------------------------------

    def monotonic(self) -> float:
        with self._cond:
            return self._now

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        with self._cond:
            parked = _Parked(event, None if timeout is None else self._now + timeout)
            self._parked.append(parked)
            self._cond.notify_all()
            try:
                while not event.is_set():
                    if parked.deadline is not None and self._now >= parked.deadline:
                        return False
                    self._cond.wait(NOTICE_S)
                return True
            finally:
                self._parked.remove(parked)
                self._cond.notify_all()

    # -- what the test does with it ----------------------------------------------------------

    def advance(self, seconds: float) -> None:
        """Move time on; every wait whose deadline is now past ends."""
        if seconds < 0:
            raise ValueError("a monotonic clock never goes back")
        with self._cond:
            self._now += seconds
            self._cond.notify_all()

    def next_deadline(self, timeout: float = 10.0) -> float:
        """When the earliest timed wait ends, once a thread is parked in one that only time
        can end (its event not set). Waits up to ``timeout`` real seconds for one."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._earliest() is not None, timeout):
                raise TimeoutError(f"no thread parked on the clock within {timeout} s")
            deadline = self._earliest()
            assert deadline is not None
            return deadline

    def advance_to_next(self, timeout: float = 10.0) -> float:
        """Jump to the earliest parked deadline (see ``next_deadline``); returns the jump."""
        with self._cond:
            jump = self.next_deadline(timeout) - self._now
            self.advance(jump)
            return jump

    def run_until(self, done: Callable[[], bool], timeout: float = 10.0) -> None:
        """Jump from parked deadline to parked deadline until ``done()`` holds.

        ``done`` is looked at whenever a thread parks on or leaves the clock, so it should be a
        state the code under test reaches before it waits again (``CaptureLoop.is_idle``).
        """
        give_up = time.monotonic() + timeout
        with self._cond:
            while not done():
                left = give_up - time.monotonic()
                ready = self._cond.wait_for(lambda: done() or self._earliest() is not None, left)
                if not ready:
                    raise TimeoutError(f"not done within {timeout} s of real time")
                if not done():
                    self.advance(self._earliest() - self._now)  # type: ignore[operator]

    def _earliest(self) -> float | None:
        deadlines = [
            p.deadline
            for p in self._parked
            if p.deadline is not None and p.deadline > self._now and not p.event.is_set()
        ]
        return min(deadlines, default=None)
