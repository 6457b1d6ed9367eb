"""``camtrap-provision --retrieve``: the trap comes down. End the deployment, sync, report.

The final sync is ``camtrap sync`` (the uplink's own command), run as a separate process; if
this camtrap has no such command the report says so instead of pretending.
"""

from __future__ import annotations

import shutil
import sqlite3
import sys
from pathlib import Path

from device.config import ConfigError, load_settings
from device.store.db import open_readonly
from device.store.store import DB_NAME
from provisioning import credentials, deployment
from provisioning.flow import send_pending
from provisioning.paths import SERVICE, Paths
from provisioning.system import Effects, ProvisionError


def camtrap_command() -> list[str]:
    beside = Path(sys.executable).with_name("camtrap")
    if beside.exists():
        return [str(beside)]
    return [shutil.which("camtrap") or "camtrap"]


def unsynced(db_path: Path) -> dict[str, tuple[int, int]]:
    """kind -> (items, bytes) still waiting in the outbox."""
    if not db_path.exists():
        return {}
    conn = open_readonly(db_path)
    try:
        rows = conn.execute(
            "SELECT kind, COUNT(*), COALESCE(SUM(bytes), 0) FROM outbox"
            " WHERE state IN ('pending', 'inflight') GROUP BY kind ORDER BY kind"
        ).fetchall()
    except sqlite3.Error as exc:
        raise ProvisionError(f"{db_path}: {exc}") from exc
    finally:
        conn.close()
    return {kind: (count, size) for kind, count, size in rows}


def retrieve(
    paths: Paths, fx: Effects, sync_argv: list[str] | None = None, sync_timeout: float = 600.0
) -> int:
    try:
        settings = load_settings(paths.config, require_file=True)
    except ConfigError as exc:
        raise ProvisionError(f"this trap is not provisioned: {exc}") from exc
    device_id = settings.device.id
    try:
        history = deployment.load_history(paths.history, device_id)
    except ValueError as exc:
        raise ProvisionError(str(exc)) from exc

    fx.say("== Deployment")
    open_one = history.open
    if open_one is None:
        fx.say("  no open deployment (already retrieved?)")
    else:
        open_one["deploymentEnd"] = deployment.now_iso()
        open_one["registrySent"] = False
        fx.say(f"  deployment {open_one['deploymentID']} ended {open_one['deploymentEnd']}")
    if not fx.dry_run:
        send_pending(history, credentials.current(paths, device_id), fx)
    deployment.save_history(paths, fx, history)

    fx.say("== Final sync")
    fx.run(["systemctl", "stop", SERVICE])  # one writer: the agent must not hold the store
    argv = [
        *(sync_argv or camtrap_command()),
        "--config",
        str(paths.config),
        "sync",
        "--timeout",
        f"{sync_timeout:g}",
    ]
    # Our own command, not a host service: it runs even with --print-commands. It waits for
    # the cloud's acknowledgements, so it is bounded: what is left is reported below.
    limit = sync_timeout + 60
    result = fx.run(argv, timeout=limit) if fx.dry_run else fx.runner.run(argv, timeout=limit)
    text = (result.stderr or result.stdout).strip()
    if result.ok:
        fx.say("  sync finished" + (f": {text.splitlines()[-1]}" if text else ""))
    elif result.returncode == 127:
        fx.say(f"  NOT SYNCED: {argv[0]} not found on this system")
    elif "invalid choice" in text and "sync" in text:
        fx.say("  NOT SYNCED: this camtrap has no 'sync' command yet (update the package)")
    else:
        fx.say(f"  NOT SYNCED: camtrap sync exited {result.returncode}: {text[-300:]}")
    fx.run(["systemctl", "disable", SERVICE])

    fx.say("== Still on this trap, not uploaded")
    waiting = unsynced(settings.storage.data_dir / DB_NAME)
    if not waiting:
        fx.say("  nothing: every item was acknowledged by the cloud")
    for kind, (count, size) in waiting.items():
        fx.say(f"  {kind}: {count} item(s), {size / 1e6:.1f} MB")
    if waiting:
        fx.say(f"  copy {settings.storage.data_dir} off the card before wiping it")
    return 0 if result.ok and not waiting else 4
