"""gcp-storage-emulator (PyPI) for tests: a local Google Cloud Storage API on a free port.

Started once per test session as its own process; every test makes its own bucket
(``gcs_bucket``), so tests share nothing. Objects are kept on disk in a temp dir, so ``stop()``
then ``start()`` (same port) plays "the object store was unreachable for a while" without
wiping what it held. google-cloud-storage finds it through ``STORAGE_EMULATOR_HOST``, which
``gcs_bucket`` sets for the test.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.support.ports import reserve_port

START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 10


class GcsEmulator:
    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir
        self.port = port
        self.log_path = data_dir / "emulator.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/", timeout=0.5) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def start(self) -> None:
        """Start (again) on the same port and data dir; returns once it answers."""
        if self._proc is not None and self._proc.poll() is None:
            return
        # Its disk store lives under STORAGE_BASE (default: the working directory).
        env = {**os.environ, "STORAGE_BASE": str(self.data_dir)}
        argv = [sys.executable, "-m", "gcp_storage_emulator", "start", "--quiet"]
        argv += ["--host", "127.0.0.1", "--port", str(self.port)]
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                argv,
                cwd=self.data_dir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._ready():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                log_tail = self.log_path.read_text(errors="replace")[-2000:]
                self.stop()
                pytest.fail(f"gcp-storage-emulator did not start on {self.endpoint}:\n{log_tail}")
            time.sleep(0.05)  # a refused connection is instant: polling often costs nothing

    def stop(self) -> None:
        """Stop the process; until ``start()`` every request to the endpoint is refused."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT_S)


class GcsBucket(NamedTuple):
    endpoint: str
    name: str


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsEmulator]:
    if importlib.util.find_spec("gcp_storage_emulator") is None:
        pytest.skip("gcp-storage-emulator is not installed (pip install gcp-storage-emulator)")
    emulator = GcsEmulator(tmp_path_factory.mktemp("gcs"), reserve_port())
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def gcs_bucket(gcs_emulator: GcsEmulator, monkeypatch: pytest.MonkeyPatch) -> GcsBucket:
    """A new, empty bucket of this test's own, with STORAGE_EMULATOR_HOST pointing at it."""
    storage = pytest.importorskip("google.cloud.storage")
    from google.auth.credentials import AnonymousCredentials

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.endpoint)
    gcs_emulator.start()  # a test before this one may have left it stopped
    name = f"camtrap-test-{uuid.uuid4().hex[:12]}"
    client = storage.Client(project="camtrap-test", credentials=AnonymousCredentials())
    client.create_bucket(name, timeout=10)
    return GcsBucket(endpoint=gcs_emulator.endpoint, name=name)
