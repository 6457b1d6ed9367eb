"""What the device remembers about updates across restarts, in one small fsync'd JSON file.

``floors`` are the anti-rollback floors, one per pack name: the highest version of that name
ever switched to (ordered by ``device.contracts.versions``). An update must be strictly newer
than its own name's floor, so a replayed (validly signed) older manifest is refused even after
the device rolled back to an older pack, while a head named ``site`` may install over a full
pack named ``efficientnet...`` whatever their version numbers. ``failed`` lists the packs
(``name@version``) that failed their self-test or trial, so a retained desired-model message
does not retry them on every reconnect. ``trial`` is a pack in its first-N-inferences window.
``config`` is the last applied remote configuration (re-applied at start, see
``remote_config``).

A state file written before floors were per name holds one ``floor_version``: it is kept as
``legacy_floor`` until the updater knows which name it protects (the pack ``current`` serves,
else the configured pack; ``ModelUpdater.reconcile``) and is then folded into ``floors``.
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
    floors: dict[str, str] = field(default_factory=dict)  # pack name -> highest version
    failed: dict[str, str] = field(default_factory=dict)  # "name@version" -> why
    trial: Trial | None = None
    config_version: int = 0
    config_values: dict[str, dict[str, Any]] = field(default_factory=dict)
    recent_commands: list[str] = field(default_factory=list)
    # An old state file's single floor, until ``migrate_legacy`` names the pack it protects.
    legacy_floor: str | None = None


def pack_id(name: str, version: str) -> str:
    """How ``failed`` names a pack: two packs may share a version, never a name and one."""
    return f"{name}@{version}"


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
        floors = raw.get("floors")
        return OtaState(
            floors={str(k): str(v) for k, v in (floors or {}).items()},
            failed=dict(raw.get("failed") or {}),
            trial=Trial(**trial) if isinstance(trial, dict) else None,
            config_version=int(raw.get("config_version") or 0),
            config_values=dict(raw.get("config_values") or {}),
            recent_commands=list(raw.get("recent_commands") or []),
            legacy_floor=raw.get("floor_version") if floors is None else None,
        )

    def save(self) -> None:
        with self.lock:
            while len(self.state.failed) > MAX_FAILED:
                self.state.failed.pop(next(iter(self.state.failed)))
            data = asdict(self.state)
            # Until it is migrated, the old floor is written back as it was read: a restart
            # before the migration must not lose it.
            legacy = data.pop("legacy_floor")
            if legacy is not None:
                data["floor_version"] = legacy
            text = json.dumps(data, indent=2, sort_keys=True) + "\n"
            atomic_write(self.path, text.encode(), make_parents=True)

    def floor(self, name: str) -> str | None:
        with self.lock:
            return self.state.floors.get(name)

    def raise_floor(self, name: str, version: str) -> None:
        with self.lock:
            if newer(version, self.state.floors.get(name)):
                self.state.floors[name] = version
                self.save()

    def migrate_legacy(self, name: str | None) -> bool:
        """Fold an old file's single floor (and its failed versions, then keyed by version
        alone) into ``name``'s; True if there was one. With no name known the old floor is
        kept as it is, still protecting nothing less than before."""
        with self.lock:
            state = self.state
            legacy = state.legacy_floor
            bare = [k for k in state.failed if "@" not in k]
            if name is None or (legacy is None and not bare):
                return False
            if legacy is not None and newer(legacy, state.floors.get(name)):
                state.floors[name] = legacy
            state.failed = {
                (pack_id(name, k) if "@" not in k else k): v for k, v in state.failed.items()
            }
            state.legacy_floor = None
            self.save()
            return True
