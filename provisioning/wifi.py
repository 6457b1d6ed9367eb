"""Known Wi-Fi networks, through NetworkManager's ``nmcli`` (Raspberry Pi OS Bookworm).

Each network becomes a connection profile named ``camtrap-<ssid>`` that autoconnects; a re-run
modifies the profile instead of adding a duplicate. The passphrase is an argument to nmcli
(root-only device, no other users), and is masked wherever a command is printed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from provisioning.questions import _psk, _ssid
from provisioning.system import Effects, ProvisionError


@dataclass(frozen=True)
class Network:
    ssid: str
    psk: str | None  # None: an open network
    hidden: bool = False

    @property
    def profile(self) -> str:
        return f"camtrap-{self.ssid}"


def networks_from(answers: dict[str, Any]) -> list[Network]:
    out: list[Network] = []
    if answers.get("wifi.ssid"):
        out.append(Network(answers["wifi.ssid"], answers.get("wifi.psk")))
    for item in answers.get("wifi.networks") or []:
        if not isinstance(item, dict) or "ssid" not in item:
            raise ValueError("wifi.networks: each entry needs an ssid")
        try:
            ssid = _ssid(item["ssid"], {})
            psk = _psk(item["psk"], {}) if item.get("psk") else None
        except ValueError as exc:
            raise ValueError(f"wifi.networks {item.get('ssid')!r}: {exc}") from exc
        out.append(Network(ssid, psk, bool(item.get("hidden", False))))
    return out


def commands(network: Network, exists: bool) -> list[list[str]]:
    settings = ["connection.autoconnect", "yes", "802-11-wireless.ssid", network.ssid]
    if network.hidden:
        settings += ["802-11-wireless.hidden", "yes"]
    if network.psk:
        settings += ["wifi-sec.key-mgmt", "wpa-psk", "wifi-sec.psk", network.psk]
    if exists:
        return [["nmcli", "connection", "modify", network.profile, *settings]]
    return [
        [
            "nmcli",
            "connection",
            "add",
            "type",
            "wifi",
            "ifname",
            "*",
            "con-name",
            network.profile,
            *settings,
        ]
    ]


def existing_profiles(effects: Effects) -> set[str]:
    if effects.print_commands:
        return set()
    result = effects.run(["nmcli", "-t", "-f", "NAME", "connection", "show"], reads=True)
    if result.returncode == 127 and effects.dry_run:
        effects.say("  (nmcli is not installed here; a real run needs NetworkManager)")
        return set()
    if result.returncode == 127:
        raise ProvisionError("nmcli not found: NetworkManager is needed to set up Wi-Fi")
    if not result.ok:
        raise ProvisionError(f"nmcli could not list connections: {result.stderr.strip()}")
    return {line.strip() for line in result.stdout.splitlines() if line.strip()}


def configure(effects: Effects, networks: list[Network]) -> list[str]:
    """Add or update each network; returns one line per network for the summary."""
    if not networks:
        return []
    have = existing_profiles(effects)
    lines = []
    for network in networks:
        ran = True
        for argv in commands(network, network.profile in have):
            result = effects.run(argv, secrets=[network.psk] if network.psk else [])
            if not result.ok:
                raise ProvisionError(
                    f"nmcli refused network {network.ssid!r}: {result.stderr.strip()}"
                )
            ran = ran and result.ran
        exists = network.profile in have
        if ran:
            lines.append(f"{network.ssid} ({'updated' if exists else 'added'})")
        else:
            lines.append(f"would {'update' if exists else 'add'} Wi-Fi network {network.ssid}")
    return lines
