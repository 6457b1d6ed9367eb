"""Every file the provisioning script reads or writes, under one ``--root`` prefix.

On a Pi the root is ``/``. Tests and ``make demo`` give a temporary directory, and then the
paths written into the config point inside that root too, so the result runs in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SERVICE = "camtrap-agent.service"


@dataclass(frozen=True)
class Paths:
    root: Path = Path("/")

    def under(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    @property
    def relocated(self) -> bool:
        return self.root.resolve() != Path("/")

    @property
    def cpuinfo(self) -> Path:
        return self.under("/proc/cpuinfo")

    @property
    def state_dir(self) -> Path:
        return self.under("/var/lib/camtrap")

    @property
    def device_id_file(self) -> Path:
        return self.state_dir / "device-id"

    @property
    def history(self) -> Path:
        return self.state_dir / "deployments.json"

    @property
    def label(self) -> Path:
        return self.state_dir / "label.png"

    @property
    def manual_marker(self) -> Path:
        return self.state_dir / "clock-manual"

    @property
    def selftest_dir(self) -> Path:
        return self.state_dir / "selftest"

    @property
    def fallback_dir(self) -> Path:
        return self.under("/run/camtrap/fallback")

    @property
    def config_dir(self) -> Path:
        return self.under("/etc/camtrap")

    @property
    def config(self) -> Path:
        return self.config_dir / "camtrap.toml"

    @property
    def secrets(self) -> Path:
        return self.config_dir / "secrets.toml"

    @property
    def pki_dir(self) -> Path:
        return self.config_dir / "pki"

    @property
    def key(self) -> Path:
        return self.pki_dir / "device.key"

    @property
    def cert(self) -> Path:
        return self.pki_dir / "device.crt"

    @property
    def ca(self) -> Path:
        return self.pki_dir / "ca.crt"

    @property
    def timesync_flag(self) -> Path:
        return self.under("/run/systemd/timesync/synchronized")

    @property
    def rtc(self) -> Path:
        return self.under("/sys/class/rtc/rtc0")
