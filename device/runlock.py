"""Who may write the device database: one process at a time, by an ``flock`` in the data dir.

The agent holds ``.agent.lock`` while it runs; ``camtrap sync`` takes it only when no agent
does, and otherwise asks the agent to sync (``SYNC_REQUEST``) and watches read-only. The
kernel drops the lock when its holder dies, even by SIGKILL, so a crash never leaves it stale.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = ".agent.lock"
SYNC_REQUEST = ".sync-request"


class RunLock:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self, blocking: bool = True) -> bool:
        """True once held; False if another process holds it (only when not blocking)."""
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def holder_pid(self) -> int | None:
        try:
            return int(self.path.read_text().strip() or 0) or None
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
