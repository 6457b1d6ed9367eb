"""Exit codes of ``camtrap``, ``camtrap-provision`` and ``camtrap-cloud``: one table for all three.

docs/agent.md lists them for technicians; scripts and the systemd unit act on them. The
numbers below 10 predate this table and keep their meaning; sysexits.h values are used where
one fits, so shell users meet familiar numbers.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["Exit"]


class Exit(IntEnum):
    OK = 0
    # The job ran but did not finish: sync left items queued, simulate missed a PIR edge.
    NOT_DONE = 1
    # Bad configuration or a bad argument; also a database written by a newer camtrap.
    # systemd does not restart the agent on it: restarting cannot fix it.
    USAGE = 2
    # camtrap-provision: the self-test checklist failed.
    SELFTEST_FAILED = 3
    # camtrap-provision --retrieve: it cannot prove every item reached the cloud.
    NOT_SYNCED = 4
    # The data dir does not exist: the card is not mounted, or the path is wrong.
    NO_DATA_DIR = 10
    # The store exists but cannot be read: permission, not a database, a corrupt page.
    STORE_UNREADABLE = 11
    # The store is locked by another writer for longer than the busy timeout.
    STORE_LOCKED = 12
    # The store can be read but not written (read-only card) and the command must write.
    STORE_READ_ONLY = 13
    # An input (image, labels file, directory) is malformed or empty.
    DATA_ERROR = 65
    # An input file or directory given on the command line does not exist.
    NO_INPUT = 66
    # Hardware (camera, GPIO) or a remote host is not available.
    UNAVAILABLE = 69
    # A bug: an unexpected exception. The one-line message says how to see the traceback.
    SOFTWARE = 70
    # An output file or directory cannot be created or written; also an import stopped
    # because the trap's disk is full (it resumes once there is room).
    CANT_CREATE = 73
    # An input device failed while it was read: a card pulled out mid-import (run the import
    # again: it resumes, with no duplicates).
    IO_ERROR = 74
    # Stopped on request, start again (remote restart-agent; the unit restarts on non-zero).
    RESTART = 75
    INTERRUPTED = 130
