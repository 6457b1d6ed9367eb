"""Heads over the air: a trap verifies, downloads, self-tests, switches to and rolls back a head
like any pack, and refuses the ones it must, with the old model still serving.

Each test builds its own trap: the device's real OTA service (its model thread, state file,
models directory and engine guard) serving the shipped default pack, a real HTTP pack server,
and packs signed with an Ed25519 key made for the test. Desired-model messages go in through
the service's downlink hook, encoded as the cloud sends them; the link itself is covered by
tests/test_ota_attacks.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cloud_stub.models.keys import new_keypair
from cloud_stub.models.server import PackServer
from cloud_stub.models.signing import resign_pack, sign_pack
from device.config import Settings
from device.contracts.pack import DEFAULT_PACK_DIR
from device.contracts.protocol import DesiredModel, encode
from device.ota.engine_guard import EngineGuard
from device.ota.layout import Layout, load_active_engine
from device.ota.service import OtaService
from device.vision.engine import EventFrame, VisionEngine
from tests.support.world import trap_settings
from tests.test_ota_signing import private_key, resign_manifest
from tests.test_vision_head import (
    BACKBONE,
    BLANK,
    LION,
    Scenes,
    backbone_pack,
    head_pack,
    make_scenes,
)
from tests.test_vision_novelty import embedding_pack

FULL_NAME = "efficientnet-lite0-imagenet"
SERVING = BACKBONE  # what the trap serves before any update: the shipped pack


@dataclass
class Trap:
    settings: Settings
    service: OtaService
    server: PackServer
    reports: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @property
    def serving(self) -> str | None:
        return self.service.guard.classified_by

    @property
    def layout(self) -> Layout:
        return Layout.of(self.settings)

    @property
    def current(self) -> str | None:
        return self.layout.link_target(self.layout.current)

    def codes(self) -> list[str]:
        return [code for code, _ in self.reports]

    def detail(self) -> str:
        return str(self.reports[-1][1].get("detail", ""))

    def installed(self) -> list[str]:
        return sorted(p.name for p in self.layout.packs.iterdir() if not p.name.startswith("."))

    def state(self) -> dict[str, Any]:
        return json.loads(self.layout.state_path.read_text())

    def stage(self, pack: Path) -> Path:
        """Put ``pack`` on the pack server as the cloud does; returns the served copy."""
        manifest = json.loads((pack / "manifest.json").read_text())
        served = self.server.packs_dir / f"{manifest['name']}@{manifest['version']}"
        if not served.exists():
            shutil.copytree(pack, served)
        return served

    def offer(self, pack: Path, staged: bool = False) -> list[str]:
        """Send the desired-model message for ``pack`` and wait until the service is idle;
        returns the report codes of this offer."""
        if not staged:
            self.stage(pack)
        manifest = json.loads((pack / "manifest.json").read_text())
        desired = DesiredModel(
            device_id=self.settings.device.id,
            rollout_id=f"r-{uuid.uuid4().hex[:8]}",
            name=manifest["name"],
            version=manifest["version"],
            url=self.server.pack_url(manifest["name"], manifest["version"]),
            manifest=manifest,
            published_at=datetime.now(UTC),
        )
        before = len(self.reports)
        self.service.handle_downlink("model", encode(desired))
        assert self.service.wait_idle(60)
        return self.codes()[before:]

    def files_requested(self) -> list[str]:
        return [path for path, _, _ in self.server.requests]


INSTALLED = [
    "model.verify.ok",
    "model.download.ok",
    "model.stage.ok",
    "model.selftest.ok",
    "model.switch.ok",
]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Scenes:
    """An animal scene and the empty view, and the default backbone's embedding of each."""
    return make_scenes(tmp_path_factory.mktemp("scenes"))


@pytest.fixture
def fleet_key(tmp_path) -> tuple[Path, Path]:
    return new_keypair(tmp_path / "fleet-keys")


@pytest.fixture
def trap(tmp_path, fleet_key) -> Iterator[Trap]:
    with make_trap(tmp_path, fleet_key[1]) as made:
        yield made


@contextlib.contextmanager
def make_trap(
    tmp_path: Path, pub: Path, *, factory: Path = DEFAULT_PACK_DIR, trial: int = 0
) -> Iterator[Trap]:
    home = tmp_path / "trap"
    settings = trap_settings(
        home,
        device={"id": "trap-h", "deployment_id": "dep-1"},
        vision={"enabled": True, "pack": factory},
        ota={
            "trusted_keys": [str(pub)],
            "trusted_keys_dir": home / "no-package-keys",
            "download_retries": 0,
            "trial_inferences": trial,
        },
    )
    (tmp_path / "cloud-packs").mkdir()
    with PackServer(tmp_path / "cloud-packs") as server:
        reports: list[tuple[str, dict[str, Any]]] = []
        guard = EngineGuard(load_active_engine(settings))
        service = OtaService(
            settings,
            lambda code, severity, details: reports.append((code, details)),
            guard=guard,
        ).start()
        try:
            yield Trap(settings, service, server, reports)
        finally:
            service.stop()


def signed(pack: Path, key: Path) -> Path:
    """Sign ``pack`` in place, valid for a week, as ``camtrap-cloud model sign`` does."""
    sign_pack(pack, key, expires_in=timedelta(days=7))
    return pack


def signed_head(
    out: Path, scenes: Scenes, key: Path, *, version: str = "1.0.0", **kwargs: Any
) -> Path:
    """A head over the default backbone that passes its self-test: blank/lion, the animal
    scene as its golden image."""
    kwargs.setdefault("golden", (scenes.animal, "lion"))
    return signed(head_pack(out, scenes, [BLANK, LION], version=version, **kwargs), key)


def head_id(version: str = "1.0.0", name: str = "site-head") -> str:
    return f"{BACKBONE}+{name}@{version}"


# -- installs ---------------------------------------------------------------------------------


def test_a_signed_head_installs_over_the_shipped_pack_and_serves(trap, scenes, fleet_key):
    head = signed_head(trap.settings.storage.data_dir.parent / "h", scenes, fleet_key[0])
    assert trap.offer(head) == [*INSTALLED, "model.trial.ok"]
    assert trap.serving == head_id()
    assert trap.current == "packs/site-head@1.0.0"
    # Only the head travelled: kilobytes, not the backbone's megabytes.
    assert sorted(trap.files_requested()) == sorted(
        f"/packs/site-head@1.0.0/{name}" for name in ("golden/scene.jpg", "head.npz", "labels.txt")
    )
    verdict = trap.service.guard.classify_event([EventFrame("m", scenes.animal, None)])
    assert {row.classified_by for row in verdict.observations} == {head_id()}
    assert verdict.observations[0].scientific_name == "Panthera leo"
    # After a restart the agent serves the head again, on the configured backbone.
    assert load_active_engine(trap.settings).classified_by == head_id()
    assert trap.state()["floors"] == {"site-head": "1.0.0"}


def full_pack_update(tmp_path: Path, key: Path, version: str = "1.0.1") -> Path:
    """The shipped pack re-signed as a newer version (the same model file)."""
    return resign_pack(DEFAULT_PACK_DIR, tmp_path / f"full-{version}", version, key)


def test_a_head_over_an_installed_full_pack_then_a_failed_trial_goes_back_to_it(
    tmp_path, scenes, fleet_key
):
    def loader(pack: Path, vision: Any, location: Any) -> VisionEngine:
        engine = VisionEngine.load(pack, vision, location)
        if engine.pack.head is not None:
            engine.__class__ = CrashesOnEvents  # passes its goldens, fails on real events
        return engine

    with make_trap(tmp_path, fleet_key[1]) as trap:
        assert trap.offer(full_pack_update(tmp_path, fleet_key[0]))[-1] == "model.trial.ok"
        assert trap.serving == f"{FULL_NAME}@1.0.1"
        trap.settings.ota.trial_inferences = 2  # the head's first events are on probation
        trap.service.load_engine = trap.service.updater.load_engine = loader
        # A head named site-head at 1.0.0 installs over efficientnet... at 1.0.1: floors are
        # per pack name.
        head = signed_head(tmp_path / "h", scenes, fleet_key[0])
        assert trap.offer(head)[-1] == "model.switch.ok"
        assert trap.serving == head_id() and trap.service.guard.in_trial
        assert os.readlink(trap.layout.previous) == f"packs/{FULL_NAME}@1.0.1"
        verdict = trap.service.guard.classify_event([EventFrame("m", scenes.animal, None)])
        # The event was classified by what served before, and the switch is undone.
        assert verdict.observations[0].classified_by == f"{FULL_NAME}@1.0.1"
        trap.service.wait_idle(30)
        assert trap.codes()[-2:] == ["model.trial.failed", "model.rollback.ok"]
        assert trap.serving == f"{FULL_NAME}@1.0.1"
        assert trap.current == f"packs/{FULL_NAME}@1.0.1"
        assert load_active_engine(trap.settings).classified_by == f"{FULL_NAME}@1.0.1"
        assert "site-head@1.0.0" in trap.state()["failed"]
        # The retained offer comes back on a reconnect: it is not tried again.
        assert trap.offer(head, staged=True) == []


class CrashesOnEvents(VisionEngine):
    def classify_event(self, frames):  # type: ignore[no-untyped-def]
        raise RuntimeError("the head's engine crashed on a real event")


def test_prune_keeps_the_backbone_the_serving_and_previous_heads_need(tmp_path, scenes, fleet_key):
    with make_trap(tmp_path, fleet_key[1]) as trap:
        assert trap.offer(full_pack_update(tmp_path, fleet_key[0]))[-1] == "model.trial.ok"
        for version in ("1.0.0", "1.0.1"):
            head = signed_head(tmp_path / f"h{version}", scenes, fleet_key[0], version=version)
            assert trap.offer(head)[-1] == "model.trial.ok"
        assert trap.serving == head_id("1.0.1")
        # current is head 1.0.1, previous head 1.0.0; the full pack they run on stays.
        assert trap.installed() == [f"{FULL_NAME}@1.0.1", "site-head@1.0.0", "site-head@1.0.1"]


def test_a_backbone_pack_is_kept_when_a_head_runs_on_it_and_dropped_when_none_does(
    tmp_path, scenes, fleet_key
):
    from device.ota import layout as layout_mod

    with make_trap(tmp_path, fleet_key[1]) as trap:
        layout = trap.layout
        layout.ensure()
        backbone_pack(layout.packs / "lite0-backbone@2.0.0")
        head_pack(
            layout.packs / "site-head@1.0.0", scenes, [BLANK, LION],
            backbone="lite0-backbone@2.0.0",
        )  # fmt: skip
        embedding_pack(layout.packs / "tiny-embedding@1.0.0")
        os.symlink("packs/site-head@1.0.0", layout.current)
        assert layout_mod.prune(layout) == ["tiny-embedding@1.0.0"]
        assert trap.installed() == ["lite0-backbone@2.0.0", "site-head@1.0.0"]
        layout.current.unlink()
        assert sorted(layout_mod.prune(layout)) == ["lite0-backbone@2.0.0", "site-head@1.0.0"]


# -- rejections: each leaves the old model serving and nothing installed ---------------------


def assert_untouched(trap: Trap, serving: str = SERVING, current: str | None = None) -> None:
    assert trap.serving == serving
    assert trap.current == current
    assert not any(p.startswith("site-head") for p in trap.installed())


def test_a_head_file_changed_after_signing_is_refused_at_download(trap, scenes, fleet_key):
    head = signed_head(trap.settings.storage.data_dir.parent / "h", scenes, fleet_key[0])
    served = trap.stage(head)
    weights = bytearray((served / "head.npz").read_bytes())
    weights[len(weights) // 2] ^= 0x01
    (served / "head.npz").write_bytes(bytes(weights))
    codes = trap.offer(head, staged=True)
    assert codes[-1] == "model.download.failed"
    assert "head.npz: sha256 mismatch" in trap.detail()
    assert_untouched(trap)


def test_a_head_manifest_changed_after_signing_is_refused_before_download(trap, scenes, fleet_key):
    head = signed_head(trap.settings.storage.data_dir.parent / "h", scenes, fleet_key[0])
    manifest = json.loads((head / "manifest.json").read_text())
    manifest["thresholds"]["blank"] = 0.5  # a looser blank filter, slipped in after signing
    (head / "manifest.json").write_text(json.dumps(manifest))
    assert trap.offer(head) == ["model.verify.failed"]
    assert "does not verify" in trap.detail()
    assert trap.files_requested() == []
    assert_untouched(trap)


def test_a_head_for_another_backbone_is_refused_before_any_download(trap, scenes, fleet_key):
    root = trap.settings.storage.data_dir.parent
    tiny = embedding_pack(root / "tiny")
    tiny_sha = json.loads((tiny / "manifest.json").read_text())["files"]["model.tflite"]["sha256"]
    head = head_pack(
        root / "h", scenes, [BLANK, LION], backbone_sha=tiny_sha,
        backbone="tiny-embedding@1.0.0", weights=(np.eye(2, 8), np.zeros(2)),
        embedding_size=8, golden=(scenes.empty, "lion"),
    )  # fmt: skip
    signed(head, fleet_key[0])
    assert trap.offer(head) == ["model.verify.failed"]
    serving_sha = json.loads((DEFAULT_PACK_DIR / "manifest.json").read_text())["files"][
        "model.tflite"
    ]["sha256"]
    assert trap.detail() == (
        f"head site-head@1.0.0 needs backbone tiny-embedding@1.0.0 (sha256 {tiny_sha[:12]}), "
        f"this trap serves {SERVING} (sha256 {serving_sha[:12]}): refused before download"
    )
    assert trap.files_requested() == []  # nothing was asked of the pack server
    assert_untouched(trap)


def test_a_replayed_older_head_is_refused_but_another_names_floor_does_not_block_it(
    trap, scenes, fleet_key
):
    root = trap.settings.storage.data_dir.parent
    older = signed_head(root / "h100", scenes, fleet_key[0], version="1.0.0")
    assert trap.offer(signed_head(root / "h101", scenes, fleet_key[0], version="1.0.1"))[-1] == (
        "model.trial.ok"
    )
    assert trap.serving == head_id("1.0.1")
    assert trap.offer(older) == ["model.verify.failed"]  # validly signed, and older
    assert trap.detail() == (
        "version 1.0.0 is not newer than site-head 1.0.1, installed before (anti-rollback)"
    )
    assert trap.serving == head_id("1.0.1") and trap.current == "packs/site-head@1.0.1"
    assert "/packs/site-head@1.0.0/head.npz" not in trap.files_requested()
    # Another pack name has its own floor: a first version of it installs.
    other = signed_head(root / "other", scenes, fleet_key[0], name="river-head")
    assert trap.offer(other)[-1] == "model.trial.ok"
    assert trap.serving == head_id(name="river-head")
    assert trap.state()["floors"] == {"site-head": "1.0.1", "river-head": "1.0.0"}


def test_a_head_whose_signature_has_expired_is_refused_before_download(trap, scenes, fleet_key):
    head = signed_head(trap.settings.storage.data_dir.parent / "h", scenes, fleet_key[0])
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    resign_manifest(head, private_key(fleet_key[0]), expires=past)
    assert trap.offer(head) == ["model.verify.failed"]
    assert trap.detail().startswith("expired at ")
    assert trap.files_requested() == []
    assert_untouched(trap)


def test_a_head_that_fails_its_golden_self_test_leaves_the_previous_model(trap, scenes, fleet_key):
    root = trap.settings.storage.data_dir.parent
    head = signed_head(root / "h", scenes, fleet_key[0], golden=(scenes.empty, "lion"))
    assert trap.offer(head)[-1] == "model.selftest.failed"
    assert "self-test failed: golden/scene.jpg: expected lion in top 1, got blank" in trap.detail()
    assert_untouched(trap)
    assert "site-head@1.0.0" in trap.state()["failed"]
    assert trap.offer(head, staged=True) == []  # the retained offer is not retried


def test_a_backbone_pack_offered_over_the_air_is_refused_before_download(trap, fleet_key):
    pack = backbone_pack(trap.settings.storage.data_dir.parent / "backbone")
    signed(pack, fleet_key[0])
    assert trap.offer(pack) == ["model.verify.failed"]
    assert trap.detail() == (
        "a backbone pack gives no verdict alone and cannot serve: a new backbone ships as a "
        "full pack with an embedding output"
    )
    assert trap.files_requested() == []
    assert trap.serving == SERVING and trap.current is None


# -- the state file from before per-name floors ------------------------------------------------


def test_an_old_state_files_single_floor_protects_the_pack_it_was_for(tmp_path, scenes, fleet_key):
    state_path = tmp_path / "trap" / "data" / "ota" / "state.json"
    state_path.parent.mkdir(parents=True)
    state_path.write_text(
        json.dumps({"floor_version": "1.0.5", "failed": {"1.0.7": "selftest: bad"}})
    )
    with make_trap(tmp_path, fleet_key[1]) as trap:
        # The floor was for what served: the configured pack, by its name.
        state = trap.state()
        assert state["floors"] == {FULL_NAME: "1.0.5"} and "floor_version" not in state
        assert state["failed"] == {f"{FULL_NAME}@1.0.7": "selftest: bad"}
        replay = full_pack_update(tmp_path, fleet_key[0], version="1.0.3")
        assert trap.offer(replay) == ["model.verify.failed"]
        assert "anti-rollback" in trap.detail()
        # A head has its own name: the old floor does not stand in its way.
        assert trap.offer(signed_head(tmp_path / "h", scenes, fleet_key[0]))[-1] == (
            "model.trial.ok"
        )
        assert trap.serving == head_id()
