"""Every command that reads the store tells which state it is in; none reports a missing,
unreadable or locked store as "nothing" or as 0 counts."""

from __future__ import annotations

import argparse
import io
import sqlite3
from pathlib import Path

import pytest

from device.errors import UserError
from device.exitcodes import Exit
from device.status import collect
from device.store.health import StoreState, inspect
from device.store.store import DB_NAME
from tests.support.trap_db import open_store, queue_captures
from tests.support.world import trap_settings

# The provisioning world (temp root, mosquitto, registry) for the --retrieve tests.
pytest_plugins = ["tests.support.broker", "tests.support.provisioning"]
pytestmark = pytest.mark.timeout(120)


def trap_with_captures(root: Path):  # type: ignore[no-untyped-def]
    settings = trap_settings(root, uplink={"transport": "mqtt"})
    store = open_store(settings)
    queue_captures(store, 3, frames=2)
    store.close()
    return settings


def sync(settings) -> int:  # type: ignore[no-untyped-def]
    from device.uplink.commands import cmd_sync

    args = argparse.Namespace(timeout=1.0, all=False, plain=True, json=False)
    return cmd_sync(args, lambda: settings)


# -- the states ------------------------------------------------------------------------------


def test_no_data_dir_is_its_own_state_with_exit_10(tmp_path):
    health = inspect(tmp_path / "not-mounted")
    assert health.state is StoreState.NO_DATA_DIR and health.exit_code == Exit.NO_DATA_DIR
    assert "does not exist: is the card mounted?" in health.message()
    assert str(tmp_path / "not-mounted") in health.message()


def test_a_data_dir_that_is_a_file_is_no_data_dir(tmp_path):
    (tmp_path / "card").write_text("oops")
    health = inspect(tmp_path / "card")
    assert health.state is StoreState.NO_DATA_DIR and health.reason == "not_a_directory"
    assert "not a directory" in health.message()


def test_an_empty_data_dir_and_an_empty_database_are_empty_with_exit_0(tmp_path):
    settings = trap_settings(tmp_path)
    assert inspect(settings.storage.data_dir).state is StoreState.EMPTY
    open_store(settings).close()  # a database with its schema, no captures
    health = inspect(settings.storage.data_dir)
    assert health.state is StoreState.EMPTY and health.exit_code == 0


def test_media_files_without_a_database_are_not_nothing(tmp_path):
    settings = trap_with_captures(tmp_path)
    (settings.storage.data_dir / DB_NAME).unlink()
    health = inspect(settings.storage.data_dir)
    assert health.state is StoreState.UNREADABLE and health.reason == "no_database"
    assert health.media_files == 6 and health.exit_code == Exit.STORE_UNREADABLE
    with pytest.raises(UserError) as err:
        sync(settings)
    assert err.value.code == Exit.STORE_UNREADABLE and "6 media file(s)" in err.value.message


def test_a_file_that_is_not_a_database_is_unreadable(tmp_path):
    settings = trap_settings(tmp_path)
    (settings.storage.data_dir / DB_NAME).write_bytes(b"JFIF, not SQLite" * 512)
    health = inspect(settings.storage.data_dir)
    assert (health.state, health.reason) == (StoreState.UNREADABLE, "not_a_database")
    assert health.exit_code == Exit.STORE_UNREADABLE
    assert "copy the card before wiping it" in health.message()


def test_a_corrupt_page_is_found_by_quick_check_not_reported_ok(tmp_path):
    settings = trap_with_captures(tmp_path)
    db = settings.storage.data_dir / DB_NAME
    conn = sqlite3.connect(db)
    (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name='outbox'").fetchone()
    (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    conn.close()
    with db.open("r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\xa5" * page_size)
    report = collect(settings)
    assert report["store"]["state"] == "unreadable" and report["store"]["reason"] == "corrupt"
    assert report["database"].startswith("unreadable")
    assert report["outbox_pending"] is None and report["exit_code"] == Exit.STORE_UNREADABLE
    with pytest.raises(UserError) as err:
        sync(settings)
    assert err.value.code == Exit.STORE_UNREADABLE


def test_a_locked_database_is_locked_with_exit_12(tmp_path):
    settings = trap_with_captures(tmp_path)
    holder = sqlite3.connect(settings.storage.data_dir / DB_NAME, isolation_level=None)
    try:
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("INSERT INTO counters VALUES ('held', 1)")
        health = inspect(settings.storage.data_dir, busy_timeout_s=0.2)
    finally:
        holder.close()
    assert (health.state, health.reason) == (StoreState.UNREADABLE, "locked"), health.detail
    assert health.exit_code == Exit.STORE_LOCKED


def test_status_counts_what_is_there(tmp_path):
    settings = trap_with_captures(tmp_path)
    report = collect(settings)
    assert report["store"]["state"] == "ok" and report["exit_code"] == 0
    assert (report["events"], report["media"], report["outbox_pending"]) == (3, 6, 9)
    assert report["database"] == "ok"


# -- sync ------------------------------------------------------------------------------------


def test_sync_without_a_data_dir_says_the_card_is_not_mounted(tmp_path):
    settings = trap_settings(tmp_path, uplink={"transport": "mqtt"})
    settings.storage.data_dir.rmdir()
    with pytest.raises(UserError) as err:
        sync(settings)
    assert err.value.code == Exit.NO_DATA_DIR
    assert f"data dir {settings.storage.data_dir} does not exist: is the card mounted?" in (
        err.value.message
    )


def test_sync_of_a_trap_that_never_captured_is_nothing_and_exit_0(tmp_path, capsys):
    settings = trap_settings(tmp_path, uplink={"transport": "mqtt"})
    assert sync(settings) == 0
    assert "nothing was captured" in capsys.readouterr().err


# -- run and simulate ------------------------------------------------------------------------


def test_run_with_a_data_dir_that_is_a_file_is_one_clear_error(tmp_path):
    from device.cli import cmd_run

    settings = trap_settings(tmp_path)
    settings.storage.data_dir.rmdir()
    settings.storage.data_dir.write_text("not a dir")
    with pytest.raises(UserError) as err:
        cmd_run(argparse.Namespace(), lambda: settings)
    assert err.value.code == Exit.NO_DATA_DIR
    assert str(settings.storage.data_dir) in err.value.message
    assert "not a directory" in err.value.message


def test_simulate_with_a_data_dir_that_is_a_file_is_one_clear_error(tmp_path):
    from device.simulate import SimulationPlan, run_simulation

    target = tmp_path / "sim"
    target.write_text("not a dir")
    with pytest.raises(UserError) as err:
        run_simulation(trap_settings(tmp_path), SimulationPlan(triggers=0, data_dir=target))
    assert err.value.code == Exit.NO_DATA_DIR and "is a file" in err.value.message


def test_simulate_into_a_data_dir_holding_a_locked_store_is_refused(tmp_path):
    from device.simulate import prepare_data_dir

    settings = trap_with_captures(tmp_path)
    holder = sqlite3.connect(settings.storage.data_dir / DB_NAME, isolation_level=None)
    try:
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        with pytest.raises(UserError) as err:
            prepare_data_dir(settings.storage.data_dir)
    finally:
        holder.close()
    assert err.value.code == Exit.STORE_LOCKED


# -- camtrap-provision --retrieve ------------------------------------------------------------

SYNC = ["/opt/camtrap/bin/camtrap"]


def retrieve(world) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    from provisioning.cli import main
    from provisioning.system import Result
    from tests.support.provisioning import recording_runner

    runner = recording_runner()
    runner.replies[(SYNC[0],)] = Result(0, "sync: left 0 items\n")
    out = io.StringIO()
    code = main(["--root", str(world.root), "--retrieve"], runner=runner, out=out, sync_argv=SYNC)
    return code, out.getvalue()


def test_retrieve_without_a_database_cannot_prove_anything_and_exits_4(world):
    assert world.provision().code == 0
    code, out = retrieve(world)
    assert code == Exit.NOT_SYNCED
    assert "every item was acknowledged" not in out
    assert "cannot tell what was uploaded" in out


def test_retrieve_of_a_corrupt_database_exits_4_without_a_traceback(world):
    from device.config import load_settings

    assert world.provision().code == 0
    settings = load_settings(world.config)
    store = open_store(settings)
    queue_captures(store, 1, frames=1)
    store.close()
    with (settings.storage.data_dir / DB_NAME).open("r+b") as f:
        f.write(b"\x00" * 100)
    code, out = retrieve(world)
    assert code == Exit.NOT_SYNCED
    assert "UNKNOWN" in out and "not a database" in out
    assert "copy the card before wiping it" in out
    assert "every item was acknowledged" not in out


def test_retrieve_with_everything_acknowledged_exits_0(world):
    from device.config import load_settings

    assert world.provision().code == 0
    settings = load_settings(world.config)
    store = open_store(settings)
    queue_captures(store, 1, frames=1)
    assert store.db is not None
    with store.db.write() as conn:
        conn.execute("UPDATE outbox SET state='done'")
    store.close()
    code, out = retrieve(world)
    assert "every item was acknowledged" in out
    assert code == 0


@pytest.mark.parametrize("what", ["database", "data dir"])
def test_a_store_the_user_may_not_read_is_unreadable_for_permission_never_empty(tmp_path, what):
    import shutil
    import subprocess
    import sys

    from device.config import to_toml

    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) is needed to drop root's file-permission override")
    settings = trap_with_captures(tmp_path / "trap")
    data = settings.model_dump(mode="json")
    config = tmp_path / "camtrap.toml"
    config.write_text(to_toml(data))
    data_dir = settings.storage.data_dir
    target = data_dir / DB_NAME if what == "database" else data_dir
    before = target.stat().st_mode
    target.chmod(0)
    try:
        # Root reads anything: drop its override so the mode counts, as it does for a user.
        drop = ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search"]
        result = subprocess.run(
            [*drop, sys.executable, "-m", "device.cli", "--config", str(config), "status"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        target.chmod(before)
    assert result.returncode == Exit.STORE_UNREADABLE, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "permission" in result.stderr.lower() and str(data_dir) in result.stderr
    assert "events             0" not in result.stdout
