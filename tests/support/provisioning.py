"""A world for provisioning tests: a temp root, a real mosquitto, a real registry, replay frames.

No tests here; the provisioning test modules import these fixtures and helpers.
"""

from __future__ import annotations

import io
import threading
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from cloud_stub.registry.server import BrokerInfo, RegistryServer, build_server
from cloud_stub.registry.store import RegistryStore
from provisioning.cli import main
from provisioning.system import RecordingRunner, Result
from tests.support.broker import Broker
from tests.support.ports import check_config_ports
from tests.support.world import write_jpegs

PI_CPUINFO = "processor\t: 0\nHardware\t: BCM2835\nSerial\t\t: 10000000abcd1234\nModel\t: Pi 4\n"


@dataclass
class Run:
    code: int
    out: str
    err: str
    runner: RecordingRunner


@dataclass
class ProvisionWorld:
    root: Path
    broker: Broker
    registry: RegistryServer
    registry_root: Path
    frames: Path
    answers_file: Path
    steps: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.registry.port}"

    @property
    def config(self) -> Path:
        return self.root / "etc/camtrap/camtrap.toml"

    def token(self) -> str:
        return RegistryStore(self.registry_root).new_tokens(1)[0]

    def answers(self, **sections: dict[str, Any]) -> dict[str, Any]:
        """Answers for a trap on the replay camera and mock pins; ``sections`` override."""
        data: dict[str, Any] = {
            "deployment": {
                "location_name": "Mara North, tree 14",
                "latitude": -1.2921,
                "longitude": 36.8219,
                "coordinate_uncertainty_m": 12,
                "camera_height_m": 0.6,
                "camera_tilt_deg": -5,
                "camera_heading_deg": 270,
                "habitat": "riverine woodland",
                "bait_use": False,
                "feature_type": "trailGame",
                "setup_by": "A. Technician",
            },
            "device": {"timezone": "Africa/Nairobi"},
            "pir": {"pin": 17},
            "ir": {"pin": 27},
            "registration": {
                "method": "registry",
                "url": self.url,
                "ca_file": str(self.broker.ca_file),
                "token": self.token(),
            },
            "wifi": {"ssid": "ranger-station", "psk": "correct horse battery"},
            "config": {
                "camera": {
                    "backend": "replay",
                    "replay_dir": str(self.frames),
                    "main_size": [320, 240],
                    "lores_size": [80, 60],
                },
                "pir": {"pin_factory": "mock", "sample_rate": 100.0},
                "vision": {"enabled": False},
                "clock": {"kernel_status": False},
                "storage": {"min_free_bytes": 1024 * 1024},
                "uplink": {"mqtt": {"connect_timeout_s": 5.0}},
            },
        }
        for name, values in sections.items():
            if values is None:
                data.pop(name, None)
            else:
                data.setdefault(name, {}).update(values)
        return data

    def write_answers(self, data: dict[str, Any]) -> Path:
        self.answers_file.write_text(tomli_w.dumps(data))
        return self.answers_file

    def provision(
        self,
        answers: dict[str, Any] | None = None,
        *extra: str,
        runner: RecordingRunner | None = None,
        hook=None,
    ) -> Run:
        if answers is None:
            answers = self.answers()
        runner = runner or recording_runner()
        self.write_answers(answers)
        out = io.StringIO()
        err = io.StringIO()
        argv = [
            "--root",
            str(self.root),
            "--answers",
            str(self.answers_file),
            "-n",
            "--pir-timeout",
            "0",
            *extra,
        ]
        import contextlib

        with contextlib.redirect_stderr(err):
            code = main(argv, runner=runner, hook=hook, out=out)
        return Run(code, out.getvalue(), err.getvalue(), runner)


def recording_runner() -> RecordingRunner:
    return RecordingRunner(
        replies={
            ("nmcli", "-t"): Result(0, "Wired connection 1\n"),
            ("systemctl", "is-active"): Result(3, "", ""),
        }
    )


@pytest.fixture
def world(tmp_path: Path, broker: Broker) -> Iterator[ProvisionWorld]:
    root = tmp_path / "root"
    (root / "proc").mkdir(parents=True)
    (root / "proc/cpuinfo").write_text(PI_CPUINFO)
    registry_root = tmp_path / "registry"
    server = build_server(
        registry_root, broker.pki_dir, BrokerInfo("127.0.0.1", broker.port), port=0
    )
    server.start()
    frames = tmp_path / "frames"
    write_jpegs(frames, 3, width=320, height=240)
    world = ProvisionWorld(root, broker, server, registry_root, frames, tmp_path / "answers.toml")
    try:
        yield world
    finally:
        server.stop()
    # The trap config provisioning wrote is what its agent will dial: only this test's ports.
    if world.config.is_file():
        check_config_ports(tomllib.loads(world.config.read_text()), str(world.config))


@pytest.fixture
def pins():
    """gpiozero's MockFactory for the self-test, reset afterwards."""
    from gpiozero import Device

    from device.hardware.pir import use_mock_pins

    use_mock_pins()
    yield Device.pin_factory
    Device.pin_factory.reset()


class HandWaver:
    """Drives the mock PIR pin up and down until stopped: a technician waving at the sensor."""

    def __init__(self, factory, pin: int) -> None:
        self.pin = factory.pin(pin)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._wave, daemon=True)

    def _wave(self) -> None:
        while not self._stop.is_set():
            self.pin.drive_high()
            time.sleep(0.05)
            self.pin.drive_low()
            time.sleep(0.05)

    def __enter__(self) -> HandWaver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
