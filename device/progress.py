"""A command's progress on stderr or stdout: a bar redrawn in place on a terminal, a line
every 2 s otherwise (a log, a pipe), so a long ``sync`` or ``import`` shows it is alive."""

from __future__ import annotations

import time
from typing import TextIO

BAR_WIDTH = 24
TERMINAL_EVERY_S = 0.2
PLAIN_EVERY_S = 2.0


class ProgressLine:
    def __init__(self, out: TextIO, plain: bool, label: str) -> None:
        """``label`` starts each plain line (``sync progress: ...``)."""
        self.out = out
        self.plain = plain
        self.label = label
        self.started = time.monotonic()
        self._last = 0.0
        self._drawn = False

    def elapsed(self) -> float:
        return max(1e-6, time.monotonic() - self.started)

    def due(self, force: bool = False) -> bool:
        """Time to draw again (always when ``force``: the last step)."""
        now = time.monotonic()
        if not force and now - self._last < (PLAIN_EVERY_S if self.plain else TERMINAL_EVERY_S):
            return False
        self._last = now
        return True

    def draw(self, share: float, text: str) -> None:
        if self.plain:
            print(f"{self.label}: {text}", file=self.out, flush=True)
            return
        filled = int(max(0.0, min(1.0, share)) * BAR_WIDTH)
        self.out.write(f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {text}\x1b[K")
        self.out.flush()
        self._drawn = True

    def done(self) -> None:
        """End the bar's line, if one was drawn."""
        if self._drawn:
            self.out.write("\n")
            self.out.flush()
            self._drawn = False
