"""Crash mid-install: SIGKILL the installer at random points; a restart always serves exactly
one complete pack, the old or the new, and a later attempt completes the update."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from cloud_stub.models import rollout as ro
from cloud_stub.models.keys import new_keypair
from cloud_stub.models.server import PackServer
from device import protocol
from device.contracts.signing import trusted_keys
from device.ota.installer import ModelUpdater
from device.ota.layout import Layout, active_pack_path, load_active_engine
from device.ota.state import StateFile
from device.protocol import DesiredModel
from device.vision.pack import load_pack
from tests.support.world import trap_settings
from tests.test_ota_signing import PACK_NAME, make_pack, signed_pack

RUNS = 20
REPO = Path(__file__).resolve().parents[1]

# The installer as the agent runs it, in a process of its own so it can be killed for real.
CHILD = """
import json, sys
from pathlib import Path
from device.config import Settings
from device.ota.installer import ModelUpdater
from device.ota.layout import Layout
from device.contracts.signing import trusted_keys
from device.ota.state import StateFile
from device.protocol import decode

settings = Settings(**json.loads(Path(sys.argv[1]).read_text()))
desired = decode(Path(sys.argv[2]).read_bytes())
updater = ModelUpdater(
    settings,
    StateFile(Layout.of(settings).state_path),
    trusted_keys(settings.ota.trusted_keys),
    lambda *report: None,
)
updater.reconcile()
import time
print("go", flush=True)
start = time.monotonic()
outcome = updater.install(desired)
print(outcome, time.monotonic() - start, flush=True)
"""


def _settings(home: Path, pub: Path, factory: Path):
    return trap_settings(
        home,
        vision={"enabled": True, "pack": factory},
        ota={
            "trusted_keys": [str(pub)],
            "trusted_keys_dir": home / "none",
            "trial_inferences": 5,
            "download_retries": 0,
        },
    )


def _updater(settings) -> ModelUpdater:
    return ModelUpdater(
        settings,
        StateFile(Layout.of(settings).state_path),
        trusted_keys(settings.ota.trusted_keys),
        lambda *report: None,
    )


def _desired(server: PackServer, pack: Path, version: str) -> DesiredModel:
    import json

    return DesiredModel(
        device_id="test-trap",
        rollout_id=f"r-{version}",
        name=PACK_NAME,
        version=version,
        url=server.pack_url(PACK_NAME, version),
        manifest=json.loads((pack / "manifest.json").read_text()),
        published_at=datetime.now(UTC),
    )


def _run_child(settings_file: Path, desired_file: Path, kill_after: float | None) -> float:
    """Run the installer; SIGKILL it ``kill_after`` s after it starts installing. Returns
    how long the install took (unkilled runs only)."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(settings_file), str(desired_file)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "go"
    if kill_after is None:
        outcome, took = child.stdout.readline().split()
        child.wait(60)
        assert outcome == "installed"
        return float(took)
    else:
        try:
            child.wait(kill_after)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGKILL)
            child.wait(10)
    return 0.0


def _phase(layout: Layout) -> str:
    """Where the killed install was, judged from what it left on disk."""
    if os.readlink(layout.current).endswith("@1.2.0"):
        return "switched"
    if layout.pack_dir(PACK_NAME, "1.2.0").exists():
        return "self-test"
    if list(layout.packs.glob(".staging-*")):
        return "staging"
    if list(layout.incoming.rglob("*")):
        return "download"
    return "not started"


def test_sigkill_at_random_points_of_an_install_never_leaves_a_broken_model(tmp_path):
    import json

    key, pub = new_keypair(tmp_path / "keys")
    root = tmp_path / "cloud"
    factory = make_pack(tmp_path / "factory", "1.0.0")
    old = signed_pack(tmp_path / "p110", "1.1.0", key)
    # Big enough that download, copy and fsync take a while: kills land in every phase.
    new = signed_pack(tmp_path / "p120", "1.2.0", key, pad=3_000_000)
    (root / "packs").mkdir(parents=True)
    ro.stage_pack(root, old)
    ro.stage_pack(root, new)
    with PackServer(root / "packs") as server:
        # The trap before every run: 1.1.0 installed over the air and serving.
        template = tmp_path / "template"
        settings = _settings(template, pub, factory)
        assert _updater(settings).install(_desired(server, old, "1.1.0")) == "installed"
        desired_file = tmp_path / "desired.json"
        desired_file.write_bytes(protocol.encode(_desired(server, new, "1.2.0")))

        def fresh_run(n: int):
            home = tmp_path / f"run{n}"
            shutil.copytree(template, home, symlinks=True)
            run_settings = _settings(home, pub, factory)
            settings_file = home / "settings.json"
            settings_file.write_text(json.dumps(run_settings.model_dump(mode="json")))
            return run_settings, settings_file

        calibration, settings_file = fresh_run(0)
        duration = _run_child(settings_file, desired_file, None)
        assert load_active_engine(calibration).pack.version == "1.2.0"

        rng = random.Random(int(os.environ.get("OTA_CRASH_SEED", "6")))
        served = {"1.1.0": 0, "1.2.0": 0}
        phases: dict[str, int] = {}
        for n in range(1, RUNS + 1):
            run_settings, settings_file = fresh_run(n)
            _run_child(settings_file, desired_file, rng.uniform(0, duration * 1.5))

            layout = Layout.of(run_settings)
            phase = _phase(layout)
            phases[phase] = phases.get(phase, 0) + 1
            # Restart: recovery, then what the agent would serve.
            updater = _updater(run_settings)
            updater.reconcile()
            assert not list(layout.packs.glob(".staging-*"))
            engine = load_active_engine(run_settings)
            assert engine is not None
            version = engine.pack.version
            assert version in served, f"run {n}: serving {version}"
            served[version] += 1
            assert load_pack(active_pack_path(run_settings)).version == version
            for link in (layout.current, layout.previous):
                if link.exists() or link.is_symlink():
                    load_pack(link.resolve())  # every link names a complete pack
            # The retained offer comes again after the restart and completes the update.
            if version == "1.1.0":
                assert updater.install(_desired(server, new, "1.2.0")) == "installed"
            assert load_active_engine(run_settings).pack.version == "1.2.0"
            shutil.rmtree(run_settings.storage.data_dir.parent)
        print(f"\n{RUNS} SIGKILLs in a {duration:.3f} s install: killed in {phases}, then {served}")
        assert sum(served.values()) == RUNS
