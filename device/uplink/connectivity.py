"""Is there a network, and what kind? Behind a tiny interface so tests need no NetworkManager.

Reachability is judged by the transport itself (the broker accepted us); NetworkManager only
adds a cheap early "no network at all" and tells Wi-Fi from a metered (cellular) link, which
the sync policy needs. Without ``nmcli`` (a dev machine) the network counts as unknown and the
link as unmetered; ``uplink.link_type`` overrides the guess either way.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from typing import Literal, Protocol

LinkType = Literal["wifi", "metered"]

# NetworkManager device types that mean someone pays per byte.
METERED_TYPES = {"gsm", "cdma", "modem", "wwan", "bluetooth"}


class NetworkProbe(Protocol):
    def network_up(self) -> bool | None:
        """False: certainly no network (skip connecting). None: cannot tell."""
        ...

    def link_type(self) -> LinkType: ...


@dataclass
class FixedProbe:
    """A probe that says what it is told: config overrides, tests, and machines without NM."""

    up: bool | None = None
    kind: LinkType = "wifi"

    def network_up(self) -> bool | None:
        return self.up

    def link_type(self) -> LinkType:
        return self.kind


class NmcliProbe:
    def __init__(self, nmcli: str = "nmcli", timeout_s: float = 3.0) -> None:
        self.nmcli = nmcli
        self.timeout_s = timeout_s

    def _run(self, *args: str) -> str | None:
        try:
            out = subprocess.run(
                [self.nmcli, "-t", *args],
                capture_output=True,
                text=True,
                timeout=self.timeout_s,
                check=True,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout

    def network_up(self) -> bool | None:
        out = self._run("-f", "STATE", "general")
        if out is None:
            return None
        return out.strip().startswith("connected")

    def link_type(self) -> LinkType:
        out = self._run("-f", "TYPE,STATE", "device")
        if out is None:
            return "wifi"
        connected = {
            line.split(":", 1)[0]
            for line in out.splitlines()
            if line.split(":", 1)[-1].startswith("connected")
        }
        if connected and connected <= METERED_TYPES:
            return "metered"
        return "wifi"


def probe_from_settings(link_type: str, network_manager: bool) -> NetworkProbe:
    nmcli = shutil.which("nmcli") if network_manager else None
    if nmcli is None:
        return FixedProbe(None, "metered" if link_type == "metered" else "wifi")
    probe = NmcliProbe(nmcli)
    if link_type == "auto":
        return probe
    return _Override(probe, link_type)  # type: ignore[arg-type]


@dataclass
class _Override:
    inner: NetworkProbe
    kind: LinkType

    def network_up(self) -> bool | None:
        return self.inner.network_up()

    def link_type(self) -> LinkType:
        return self.kind
