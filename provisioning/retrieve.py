"""``camtrap-provision --retrieve``: the trap comes down. End the deployment, sync, report.

The final sync is ``camtrap sync`` (the uplink's own command), run as a separate process; if
this camtrap has no such command the report says so instead of pretending.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from device.config import ConfigError, load_settings
from device.exitcodes import Exit
from device.store.db import DatabaseError
from device.store.health import StoreHealth, StoreState, classify_error, inspect_open
from device.store.outbox import Outbox
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
    """kind -> (items, bytes) still waiting in the outbox. ProvisionError if the store cannot
    be read (a missing database is no proof that nothing is waiting: see ``waiting_on``)."""
    health, waiting = waiting_on(db_path.parent)
    if waiting is None:
        raise ProvisionError(health.message())
    return waiting


def waiting_on(data_dir: Path) -> tuple[StoreHealth, dict[str, tuple[int, int]] | None]:
    """The store's state and, when it could be read, kind -> (items, bytes) still queued.

    Read-only: works on a card mounted read-only and on a copy without its WAL files."""
    health, conn = inspect_open(data_dir)
    if conn is None:
        return health, None
    try:
        queued = Outbox(conn).queued_by_kind()
    except DatabaseError as exc:
        reason, detail = classify_error(exc, data_dir / DB_NAME)
        return StoreHealth(StoreState.UNREADABLE, data_dir, reason=reason, detail=detail), None
    finally:
        conn.close()
    return health, {str(kind): counts for kind, counts in queued.items()}


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
    data_dir = settings.storage.data_dir
    health, waiting = waiting_on(data_dir)
    # Exit 0 only with proof: the sync ran, and a database that could be read in full says
    # nothing is left. Anything else is NOT SYNCED (exit 4), said plainly.
    proven = result.ok and waiting is not None and not waiting
    if health.readable and not (data_dir / DB_NAME).exists():
        fx.say(f"  UNKNOWN: no database in {data_dir}: cannot tell what was uploaded")
        proven = False
    elif waiting is None:
        fx.say(f"  UNKNOWN: {health.message()}")
    elif health.wal_unread_bytes:
        fx.say(f"  counts may be low: {health.detail}")
        proven = False
    elif not waiting:
        fx.say(
            "  nothing: every item was acknowledged by the cloud"
            if result.ok
            else "  nothing queued, but the final sync did not run: not proven"
        )
    for kind, (count, size) in (waiting or {}).items():
        fx.say(f"  {kind}: {count} item(s), {size / 1e6:.1f} MB")
    if waiting and health.detail:
        fx.say(f"  (store: {health.detail})")
    if not proven:
        fx.say(f"  NOT SYNCED: copy {data_dir} off the card before wiping it")
        # The report above is for reading; this one line is for the shell and the log.
        why = health.message() if not health.readable else "not every item was acknowledged"
        print(
            f"camtrap-provision: NOT SYNCED ({why}): copy {data_dir} off the card before wiping it",
            file=sys.stderr,
        )
    return 0 if proven else int(Exit.NOT_SYNCED)
