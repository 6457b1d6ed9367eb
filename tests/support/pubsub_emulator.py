"""The real Google Pub/Sub emulator for tests, on a free loopback port.

Started once per test session (the JVM takes seconds to boot); every test makes its own topic
and subscription, so tests still share nothing. Skips, saying why, where gcloud is missing.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.ports import free_port

PROJECT = "camtrap-test"


@dataclass(frozen=True)
class Emulator:
    host: str  # "127.0.0.1:port", the value for PUBSUB_EMULATOR_HOST
    project: str


def _gcloud() -> str | None:
    return shutil.which("gcloud")


def _emulator_ready(host: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}/", timeout=0.5) as resp:
            return resp.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def pubsub_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    gcloud = _gcloud()
    if gcloud is None:
        pytest.skip("gcloud is not installed, so the Pub/Sub emulator cannot run")
    host = f"127.0.0.1:{free_port()}"
    log_path: Path = tmp_path_factory.mktemp("pubsub") / "emulator.log"
    with log_path.open("wb") as log:
        # Own process group: gcloud starts a JVM child, and both must go when we are done.
        proc = subprocess.Popen(
            [
                gcloud,
                "beta",
                "emulators",
                "pubsub",
                "start",
                f"--host-port={host}",
                f"--project={PROJECT}",
                "--quiet",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 90
        while not _emulator_ready(host):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Pub/Sub emulator did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.05)  # a refused connection is instant: polling often costs nothing
        yield Emulator(host=host, project=PROJECT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(15)


@pytest.fixture
def pubsub_env(pubsub_emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """The emulator, with PUBSUB_EMULATOR_HOST set for the google-cloud-pubsub clients."""
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator.host)
    return pubsub_emulator
