"""What the device remembers about updates across restarts, in one small fsync'd JSON file.

``floor_version`` is the anti-rollback floor: the highest pack version ever switched to
(ordered by ``device.contracts.versions``). An update must be strictly newer, so a replayed
(validly signed) older manifest is refused even after the device rolled back to an older pack.
``failed`` lists versions that failed their self-test or trial, so a retained desired-model
message does not retry them on every reconnect. ``trial`` is a pack in its first-N-inferences
window. ``config`` is the last applied remote configuration (re-applied at start, see
``remote_config``).
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from device.contracts.durable import atomic_write
from device.contracts.versions import newer

MAX_FAILED = 50


@dataclass
class Trial:
    name: str
    version: str
    remaining: int
    previous: str | None  # symlink target that served before, None: the configured pack


@dataclass
class OtaState:
    floor_version: str | None = None
    failed: dict[str, str] = field(default_factory=dict)
    trial: Trial | None = None
    config_version: int = 0
    config_values: dict[str, dict[str, Any]] = field(default_factory=dict)
    recent_commands: list[str] = field(default_factory=list)


class StateFile:
    """Load once, save after every change; all access under one lock (two OTA threads)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.RLock()
        self.state = self._load()

    def _load(self) -> OtaState:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return OtaState()
        except (OSError, ValueError):
            # A torn or corrupt file cannot happen with atomic_write; if it does anyway, keep
            # the broken file for inspection and start from the safest assumption: the floor
            # is re-derived from the installed packs by the caller.
            self.path.replace(self.path.with_suffix(".corrupt"))
            return OtaState()
        trial = raw.get("trial")
        return OtaState(
            floor_version=raw.get("floor_version"),
            failed=dict(raw.get("failed") or {}),
            trial=Trial(**trial) if isinstance(trial, dict) else None,
            config_version=int(raw.get("config_version") or 0),
            config_values=dict(raw.get("config_values") or {}),
            recent_commands=list(raw.get("recent_commands") or []),
        )

    def save(self) -> None:
        with self.lock:
            while len(self.state.failed) > MAX_FAILED:
                self.state.failed.pop(next(iter(self.state.failed)))
            data = asdict(self.state)
            text = json.dumps(data, indent=2, sort_keys=True) + "\n"
            atomic_write(self.path, text.encode(), make_parents=True)

    def raise_floor(self, version: str) -> None:
        with self.lock:
            if newer(version, self.state.floor_version):
                self.state.floor_version = version
                self.save()
