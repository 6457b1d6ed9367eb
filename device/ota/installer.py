"""Install one desired model: verify, download, stage, self-test, switch; and roll back.

Order matters and is the security argument (docs/ota.md): nothing from the network is used
before the manifest's signature verified against a trusted key; nothing is downloaded for a
version that is not strictly newer than its pack name's anti-rollback floor or whose manifest
expired, for a head whose backbone is not the one serving, or for a backbone pack (which gives
no verdict alone); no file is kept unless its size and sha256 are the signed manifest's;
``current`` moves only to a complete, fsync'd directory that passed the golden self-test. The
manifest is read by the same ``Manifest`` model that loads packs and that the cloud signs
with, so the three never disagree on what a valid manifest is.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import device
from device.contracts.durable import atomic_symlink, copy_durably, fsync_dir, fsync_tree
from device.contracts.manifest import Manifest, PackError
from device.contracts.protocol import DesiredModel
from device.contracts.signing import SignatureError, verify_manifest
from device.contracts.versions import newer, parse_version
from device.ota import layout as layout_mod
from device.ota.download import Downloader, DownloadError, file_url
from device.ota.layout import Layout
from device.ota.reports import Reporter
from device.ota.state import StateFile, Trial, pack_id
from device.vision.pack import stated_manifest

if TYPE_CHECKING:
    from device.config import Settings
    from device.vision.engine import VisionEngine

log = logging.getLogger("camtrap.ota")

EngineLoader = Callable[..., "VisionEngine"]  # (pack, vision, location) -> engine
# (engine, trial events) -> None: make the engine serve (an EngineGuard swap).
EngineSink = Callable[["VisionEngine", int], None]


class Rejected(Exception):
    """A step refused the update; ``step`` names it for the report."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(reason)
        self.step = step
        self.reason = reason


def _write_synced(path: Path, data: dict[str, Any]) -> None:
    with path.open("w") as fh:
        fh.write(json.dumps(data, indent=2) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _default_loader(pack: Path, vision: Any, location: Any) -> VisionEngine:
    from device.vision.engine import VisionEngine

    return VisionEngine.load(pack, vision, location)


class ModelUpdater:
    def __init__(
        self,
        settings: Settings,
        state: StateFile,
        trusted: dict[str, Any],
        report: Reporter,
        *,
        engine_loader: EngineLoader | None = None,
        serve: EngineSink | None = None,
    ) -> None:
        self.settings = settings
        self.layout = Layout.of(settings)
        self.layout.ensure()
        self.state = state
        self.trusted = trusted
        self.report = report
        self.load_engine = engine_loader or _default_loader
        self.serve = serve
        self.downloader = Downloader(
            timeout_s=settings.ota.download_timeout_s,
            retries=settings.ota.download_retries,
            ca_file=settings.ota.ca_file,
        )

    # -- start-up --------------------------------------------------------------------------

    def reconcile(self) -> None:
        """After a restart: clear crash leftovers; an old state file's single floor becomes
        the floor of the pack it protected; the floor covers what ``current`` serves; a trial
        whose pack never became ``current`` (crash before the switch) is void."""
        removed = layout_mod.recover(self.layout)
        if removed:
            log.info("removed leftovers of an interrupted install: %s", ", ".join(removed))
        current = self.layout.link_target(self.layout.current)
        self._migrate_legacy_floor()
        installed = self._identity_of(current)
        with self.state.lock:
            if installed is not None:
                self.state.raise_floor(*installed)
            trial = self.state.state.trial
            if trial is not None and current != self._rel(trial.name, trial.version):
                self.state.state.trial = None
                self.state.save()

    def _migrate_legacy_floor(self) -> None:
        """The old single floor protected whatever served: the pack ``current`` names, else
        the configured one."""
        if self.state.state.legacy_floor is None and not any(
            "@" not in k for k in self.state.state.failed
        ):
            return
        serving = self._identity_of(self.layout.link_target(self.layout.current))
        if serving is None:
            configured = self._configured_manifest()
            serving = None if configured is None else (configured.name, configured.version)
        if serving is not None and self.state.migrate_legacy(serving[0]):
            log.info("anti-rollback floor of %s taken over from the old state file", serving[0])

    def _identity_of(self, target: str | None) -> tuple[str, str] | None:
        """(name, version) of the installed pack a link target names."""
        if target is None:
            return None
        manifest = stated_manifest(self.layout.resolve(target))
        return None if manifest is None else (manifest.name, manifest.version)

    def installed(self) -> tuple[str, str] | None:
        """(name, version) of the pack ``current`` names (None: the configured pack serves)."""
        return self._identity_of(self.layout.link_target(self.layout.current))

    @staticmethod
    def _rel(name: str, version: str) -> str:
        return f"packs/{name}@{version}"

    # -- the update ------------------------------------------------------------------------

    def wanted(self, desired: DesiredModel) -> bool:
        """False for a desired model already handled: installed, or failed before (a retained
        message comes again on every reconnect and must not cause a retry loop)."""
        wanted = (desired.name, desired.version)
        with self.state.lock:
            state = self.state.state
            if pack_id(*wanted) in state.failed:
                return False
            if state.trial is not None and (state.trial.name, state.trial.version) == wanted:
                return False
        return self.installed() != wanted

    def install(self, desired: DesiredModel) -> str:
        """Run every step; returns the outcome (``installed`` or the failing step)."""
        base = {"rollout": desired.rollout_id, "name": desired.name, "version": desired.version}

        def ok(step: str, **extra: Any) -> None:
            self.report(f"model.{step}.ok", "info", {**base, **extra})

        try:
            key, manifest = self._verify(desired)
            ok("verify", key_id=key)
            download = self._download(desired, manifest)
            ok("download", resumed=self.downloader.resumed)
            pack_dir = self._stage(desired, manifest, download)
            ok("stage")
            engine = self._self_test(desired, pack_dir)
            ok("selftest")
            trial = self._switch(desired, pack_dir)
            if self.serve is not None:
                self.serve(engine, trial)
            ok("switch", trial_inferences=trial)
            shutil.rmtree(download, ignore_errors=True)
            layout_mod.prune(self.layout)
            if trial == 0:
                ok("trial", detail="no trial configured")
            return "installed"
        except Rejected as exc:
            self.report(f"model.{exc.step}.failed", "error", {**base, "detail": exc.reason})
            return exc.step

    def _verify(self, desired: DesiredModel) -> tuple[str, Manifest]:
        """The signing key's id and the manifest, once every check before a download passed:
        signature, name/version, format rules, kind, anti-rollback (per pack name), agent
        version, expiry, sizes, golden images, and for a head the serving backbone."""
        try:
            key = verify_manifest(desired.manifest, self.trusted)
        except SignatureError as exc:
            raise Rejected("verify", f"signature: {exc}") from None
        try:
            manifest = Manifest.from_document(desired.manifest)
            if manifest.name != desired.name or manifest.version != desired.version:
                raise Rejected("verify", "message name/version differ from the signed manifest")
            if manifest.kind == "backbone":
                raise Rejected(
                    "verify",
                    "a backbone pack gives no verdict alone and cannot serve: a new backbone "
                    "ships as a full pack with an embedding output",
                )
            self._migrate_legacy_floor()
            floor = self._floor_of(desired.name)
            if not newer(desired.version, floor):
                raise Rejected(
                    "verify",
                    f"version {desired.version} is not newer than {desired.name} {floor}, "
                    "installed before (anti-rollback)",
                )
            manifest.check_agent(device.__version__)
            manifest.check_offer()
            self._check_backbone(manifest)
        except ValueError as exc:  # PackError, or a floor that is no version
            raise Rejected("verify", str(exc)) from None
        return key, manifest

    def _floor_of(self, name: str) -> str | None:
        """The version an offer of ``name`` must beat: the highest ever switched to, or the
        configured pack's own version if it has that name."""
        floor = self.state.floor(name)
        configured = self._configured_manifest()
        if configured is not None and configured.name == name and newer(configured.version, floor):
            floor = configured.version
        if floor is not None:
            parse_version(floor)
        return floor

    def _configured_manifest(self) -> Manifest | None:
        return stated_manifest(Path(self.settings.vision.pack))

    def _serving_pack(self) -> tuple[str, Manifest | None]:
        """What serves when no update is running: ``current``'s pack, else the configured one
        (its path, as shown in messages, and its stated manifest)."""
        target = self.layout.link_target(self.layout.current)
        if target is not None:
            path = self.layout.resolve(target)
            return str(path), stated_manifest(path)
        return str(self.settings.vision.pack), self._configured_manifest()

    def _check_backbone(self, offered: Manifest) -> None:
        """A head runs only on the model it was fitted on: the sha256 of the serving model
        file (a full pack's own, or the backbone a serving head runs on) must be the one the
        head names; otherwise it is refused before any byte is downloaded."""
        ref = offered.backbone
        if ref is None:
            return
        where, serving = self._serving_pack()
        sha = None if serving is None else serving.model_sha256
        if sha == ref.sha256:
            return
        if serving is None:
            what = f"{where}, which is not a readable pack"
        else:
            model = serving.classified_by.split("+")[0]
            what = f"{model} (sha256 {(sha or '?')[:12]})"
        raise Rejected(
            "verify",
            f"head {offered.name}@{offered.version} needs backbone {ref.name}@{ref.version} "
            f"(sha256 {ref.sha256[:12]}), this trap serves {what}: refused before download",
        )

    def _download(self, desired: DesiredModel, manifest: Manifest) -> Path:
        target = self.layout.incoming / f"{desired.name}@{desired.version}"
        self.downloader.resumed = 0
        try:
            for name, entry in sorted(manifest.files.items()):
                assert entry.size is not None  # check_offer refuses a file without a size
                self.downloader.fetch(
                    file_url(desired.url, name), target / name, entry.size, entry.sha256
                )
        except DownloadError as exc:
            raise Rejected("download", str(exc)) from None
        except OSError as exc:
            raise Rejected("download", f"local storage: {exc}") from None
        return target

    def _stage(self, desired: DesiredModel, manifest: Manifest, download: Path) -> Path:
        """Copy into ``packs/.staging-*`` (each file fsync'd), write the manifests, fsync the
        tree, rename to ``packs/<name>@<version>``, fsync ``packs``."""
        final = self.layout.pack_dir(desired.name, desired.version)
        staging = self.layout.packs / f".staging-{desired.name}@{desired.version}"
        try:
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            for name in manifest.files:
                copy_durably(download / name, staging / name)
            signed = desired.manifest
            _write_synced(staging / "manifest.signed.json", signed)
            # The signed expiry bounds how long a manifest may wait to be installed (a frozen
            # or replayed offer); it must not switch off a pack that already passed every
            # check. The local copy records the expiry and which key signed it instead.
            local = {
                **signed,
                "expires": None,
                "signature": None,
                "installed": {
                    "at": datetime.now(UTC).isoformat(),
                    "signed_manifest": "manifest.signed.json",
                    "key_id": signed["signature"]["key_id"],
                    "offer_expired": signed.get("expires"),
                    "rollout": desired.rollout_id,
                },
            }
            _write_synced(staging / "manifest.json", local)
            fsync_tree(staging)
            if final.exists():
                shutil.rmtree(final)  # a half-tested copy from an earlier, interrupted attempt
            staging.rename(final)
            fsync_dir(self.layout.packs)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise Rejected("stage", f"local storage: {exc}") from None
        return final

    def _self_test(self, desired: DesiredModel, pack_dir: Path) -> VisionEngine:
        vision = self.settings.vision.model_copy(update={"self_test": True})
        try:
            return self.load_engine(pack_dir, vision, self.settings.location)
        except PackError as exc:
            self._mark_failed(desired.name, desired.version, str(exc))
            shutil.rmtree(pack_dir, ignore_errors=True)
            raise Rejected("selftest", str(exc)) from None

    def _switch(self, desired: DesiredModel, pack_dir: Path) -> int:
        """Persist the trial, point ``previous`` at what serves now, then ``current`` at the
        new pack (each an atomic rename plus a directory fsync), then raise the floor."""
        trial_n = self.settings.ota.trial_inferences
        old = self.layout.link_target(self.layout.current)
        rel = self._rel(desired.name, desired.version)
        with self.state.lock:
            self.state.state.trial = (
                Trial(desired.name, desired.version, trial_n, old) if trial_n > 0 else None
            )
            self.state.save()
        try:
            if old is not None:
                atomic_symlink(self.layout.previous, old)
            atomic_symlink(self.layout.current, rel)
        except OSError as exc:
            raise Rejected("switch", f"local storage: {exc}") from None
        self.state.raise_floor(desired.name, desired.version)
        log.info("now serving %s (was %s)", rel, old or self.settings.vision.pack)
        return trial_n

    def _mark_failed(self, name: str, version: str, reason: str) -> None:
        with self.state.lock:
            self.state.state.failed[pack_id(name, version)] = reason[:300]
            self.state.save()

    # -- after the switch --------------------------------------------------------------------

    def finish_trial(self, passed: bool, detail: str) -> None:
        """The trial ended (on the worker thread's word). A failure moves ``current`` back to
        what served before; the engine guard has already switched engines."""
        with self.state.lock:
            trial = self.state.state.trial
            if trial is None:
                return
            self.state.state.trial = None
            if not passed:
                failed = pack_id(trial.name, trial.version)
                self.state.state.failed[failed] = f"trial: {detail}"[:300]
            self.state.save()
        base = {"name": trial.name, "version": trial.version}
        if passed:
            self.report("model.trial.ok", "info", base)
            return
        self.report("model.trial.failed", "error", {**base, "detail": detail})
        try:
            if trial.previous is None:
                self.layout.current.unlink(missing_ok=True)
                fsync_dir(self.layout.models_dir)
            else:
                atomic_symlink(self.layout.current, trial.previous)
        except OSError as exc:
            self.report("model.rollback.failed", "error", {**base, "detail": str(exc)})
            return
        back_to = trial.previous or str(self.settings.vision.pack)
        self.report("model.rollback.ok", "warning", {**base, "serving": back_to})
