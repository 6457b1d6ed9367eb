"""Where installed packs live, which one is active, and recovery after a crash.

    <models_dir>/                 default <storage.data_dir>/models
      packs/<name>@<version>/     complete, fsync'd packs (never modified once renamed here)
      packs/.staging-*            an install in progress (removed on start)
      current -> packs/a@1.1.0    the serving pack (a relative symlink)
      previous -> packs/a@1.0.0   what served before (the rollback target)
      .incoming/<name>@<version>/ resumable downloads
    <storage.data_dir>/ota/state.json

``current`` only ever points at a directory that was complete and fsync'd before the symlink
was renamed into place, so after a crash at any point it names the old pack or the new one.

A head pack in ``packs/`` runs on a backbone found by the sha256 of its model file: another
pack in ``packs/`` (e.g. the full pack it was installed over) or the configured
``vision.pack``. ``prune`` never deletes a pack that ``current``'s or ``previous``'s head needs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from device.contracts.durable import fsync_dir
from device.vision.pack import PackError, load_pack, stated_manifest, stated_model_sha256

if TYPE_CHECKING:
    from device.config import Settings
    from device.vision.engine import VisionEngine

log = logging.getLogger("camtrap.ota")


@dataclass(frozen=True)
class Layout:
    models_dir: Path
    incoming: Path
    state_path: Path

    @property
    def packs(self) -> Path:
        return self.models_dir / "packs"

    @property
    def current(self) -> Path:
        return self.models_dir / "current"

    @property
    def previous(self) -> Path:
        return self.models_dir / "previous"

    def pack_dir(self, name: str, version: str) -> Path:
        return self.packs / f"{name}@{version}"

    @classmethod
    def of(cls, settings: Settings) -> Layout:
        models = settings.ota.models_dir or settings.storage.data_dir / "models"
        return cls(
            models_dir=models,
            incoming=settings.ota.download_dir or models / ".incoming",
            state_path=settings.storage.data_dir / "ota" / "state.json",
        )

    def ensure(self) -> None:
        for directory in (self.models_dir, self.packs, self.incoming, self.state_path.parent):
            directory.mkdir(parents=True, exist_ok=True)

    def link_target(self, link: Path) -> str | None:
        try:
            return os.readlink(link)
        except (FileNotFoundError, OSError):
            return None

    def resolve(self, target: str) -> Path:
        path = Path(target)
        return path if path.is_absolute() else self.models_dir / path


def _verified(path: Path, settings: Settings) -> bool:
    import device

    try:
        load_pack(path, device.__version__, backbones=[Path(settings.vision.pack)])
    except PackError as exc:
        log.error("installed pack unusable: %s", exc)
        return False
    return True


def candidates(settings: Settings) -> list[Path]:
    """Packs to try, best first: ``current``, ``previous`` (a crash or a bad ``current`` must
    not leave the trap blind), then the configured ``vision.pack``."""
    layout = Layout.of(settings)
    out = []
    for link in (layout.current, layout.previous):
        target = layout.link_target(link)
        if target is not None:
            out.append(layout.resolve(target).resolve())
    out.append(Path(settings.vision.pack))
    return out


def active_pack_path(settings: Settings) -> Path:
    """The pack the agent should load at start: the first candidate that verifies (every
    file's size and sha256), else the configured ``vision.pack`` (whose load then reports)."""
    for path in candidates(settings):
        if path.exists() and _verified(path, settings):
            return path
    return Path(settings.vision.pack)


def load_active_engine(settings: Settings) -> VisionEngine | None:
    """Like ``active_pack_path`` but also runs the golden self-test: the engine that can
    serve, or None (the agent keeps capturing, unclassified)."""
    from device.vision.engine import VisionEngine

    for path in candidates(settings):
        if not path.exists():
            continue
        try:
            return VisionEngine.load(path, settings.vision, settings.location)
        except PackError as exc:
            log.error("cannot serve %s: %s", path, exc)
    return None


def recover(layout: Layout) -> list[str]:
    """Remove what a crash mid-install left behind; returns what was removed."""
    removed = []
    if layout.packs.is_dir():
        for leftover in layout.packs.glob(".staging-*"):
            shutil.rmtree(leftover, ignore_errors=True)
            removed.append(leftover.name)
    if layout.models_dir.is_dir():
        for tmp in layout.models_dir.glob(".*.tmp-*"):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            removed.append(tmp.name)
        if removed:
            fsync_dir(layout.models_dir)
    return removed


def prune(layout: Layout) -> list[str]:
    """Delete installed packs that are neither current nor previous nor the backbone one of
    those two heads runs on (SD space)."""
    keep = {
        layout.resolve(t).resolve()
        for t in (layout.link_target(layout.current), layout.link_target(layout.previous))
        if t is not None
    }
    needed = set()
    for pack in keep:
        manifest = stated_manifest(pack)
        if manifest is not None and manifest.backbone is not None:
            needed.add(manifest.backbone.sha256)
    removed = []
    if layout.packs.is_dir():
        for pack in layout.packs.iterdir():
            if pack.name.startswith(".") or pack.resolve() in keep:
                continue
            if needed and stated_model_sha256(pack) in needed:
                continue  # a backbone a kept head runs on
            shutil.rmtree(pack, ignore_errors=True)
            removed.append(pack.name)
    return removed
