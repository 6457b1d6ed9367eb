"""``camtrap ota status``: what the OTA side of this trap believes (packs, floors, trial, keys)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from device.config import Settings
    from device.ota.state import OtaState


def ota_status(settings: Settings) -> dict[str, Any]:
    from device.contracts.signing import trusted_keys
    from device.ota.layout import Layout, active_pack_path
    from device.ota.state import StateFile

    layout = Layout.of(settings)
    state = StateFile(layout.state_path).state if layout.state_path.exists() else None
    try:
        keys = sorted(trusted_keys(settings.ota.trusted_keys, [settings.ota.trusted_keys_dir]))
        key_error = None
    except (OSError, ValueError) as exc:
        keys, key_error = [], str(exc)
    return {
        "active_pack": str(active_pack_path(settings)),
        "current": layout.link_target(layout.current),
        "previous": layout.link_target(layout.previous),
        # Anti-rollback is per pack name: {name: the highest version ever switched to}.
        "floors": _floors(state),
        "failed_packs": state.failed if state else {},
        "trial": state.trial.__dict__ if state and state.trial else None,
        "config_version": state.config_version if state else 0,
        "trusted_key_ids": keys,
        "trusted_keys_error": key_error,
    }


def _floors(state: OtaState | None) -> dict[str, str]:
    if state is None:
        return {}
    floors = dict(state.floors)
    if state.legacy_floor is not None:  # the agent migrates it when its OTA service starts
        floors["(any pack: an older agent's floor)"] = state.legacy_floor
    return floors


def cmd_status(args: argparse.Namespace, load: Callable[[], Settings]) -> int:
    from device.contracts.errors import UserError
    from device.store.health import StoreState, inspect

    settings = load()
    # The OTA state lives on the card: without it, "no state" would be a lie about the trap.
    health = inspect(settings.storage.data_dir)
    if health.state is StoreState.NO_DATA_DIR:
        raise UserError(health.message(), health.exit_code)
    status = ota_status(settings)
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        for key, value in status.items():
            print(f"{key:18} {value}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ota", help="over-the-air updates: installed packs and state")
    osub = p.add_subparsers(dest="ota_command", required=True)
    q = osub.add_parser("status", help="active pack, anti-rollback floors, trial, trusted keys")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_status)
