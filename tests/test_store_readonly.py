"""A card mounted read-only, and a copy of the data dir without its WAL files: status and
retrieve still show the REAL counts, and say how they read them; sync refuses (it must write).

Read-only media here is a real read-only bind mount (needs root and mount(8)); without that
permission these tests skip and say why.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from device.config import to_toml
from device.errors import UserError
from device.exitcodes import Exit
from device.status import collect
from device.store.db import open_readonly
from device.store.health import StoreState, inspect
from device.store.store import DB_NAME
from provisioning.retrieve import waiting_on
from tests.support.trap_db import open_store, queue_captures
from tests.support.world import trap_settings

pytestmark = pytest.mark.timeout(120)

COUNTS = (3, 6, 9)  # events, media, outbox pending (6 media + 3 event metadata)


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, timeout=20)


@contextmanager
def read_only_mount(source: Path, target: Path) -> Iterator[Path]:
    if shutil.which("mount") is None:
        pytest.skip("mount(8) not installed: cannot make a read-only bind mount")
    target.mkdir(parents=True, exist_ok=True)
    bound = _mount("--bind", str(source), str(target))
    if bound.returncode != 0:
        pytest.skip(f"mount --bind not permitted here: {bound.stderr.strip()}")
    try:
        ro = _mount("-o", "remount,bind,ro", str(target))
        if ro.returncode != 0:
            pytest.skip(f"remount read-only not permitted here: {ro.stderr.strip()}")
        yield target
    finally:
        done = subprocess.run(["umount", str(target)], capture_output=True, timeout=20)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(target)], capture_output=True, timeout=20)


def card_as_left_by_a_power_cut(root: Path) -> Path:
    """A data dir copied while the writer was open: the commits are in the WAL only."""
    settings = trap_settings(root / "trap")
    store = open_store(settings)
    try:
        queue_captures(store, 3, frames=2)
        card = root / "card"
        shutil.copytree(settings.storage.data_dir, card)
    finally:
        store.close()
    assert (card / f"{DB_NAME}-wal").stat().st_size > 0
    return card


def cleanly_closed_card(root: Path) -> Path:
    settings = trap_settings(root / "trap")
    store = open_store(settings)
    queue_captures(store, 3, frames=2)
    store.close()
    return settings.storage.data_dir


def counts(data_dir: Path) -> tuple[int, int, int]:
    health = inspect(data_dir)
    assert health.state is StoreState.OK, health.message()
    c = health.counts
    return c["events"], c["media"], c["outbox_pending"]


def status_of(data_dir: Path, root: Path) -> dict:  # type: ignore[type-arg]
    return collect(trap_settings(root / "status-view", storage={"data_dir": data_dir}))


def test_a_read_only_card_with_wal_and_shm_shows_real_counts(tmp_path):
    card = card_as_left_by_a_power_cut(tmp_path)
    with read_only_mount(card, tmp_path / "ro") as ro:
        assert counts(ro) == COUNTS
        report = status_of(ro, tmp_path)
        assert (report["events"], report["media"], report["outbox_pending"]) == COUNTS
        assert report["store"]["writable"] is False and report["exit_code"] == 0
        assert sorted(p.name for p in ro.iterdir()) == sorted(p.name for p in card.iterdir())


def test_a_read_only_card_whose_shm_is_gone_reads_its_wal_from_a_scratch_copy(tmp_path):
    card = card_as_left_by_a_power_cut(tmp_path)
    (card / f"{DB_NAME}-shm").unlink()
    with read_only_mount(card, tmp_path / "ro") as ro:
        health = inspect(ro)
        assert health.read_via == "copy" and "WAL" in health.detail
        assert health.wal_unread_bytes == 0
        assert counts(ro) == COUNTS
        _, waiting = waiting_on(ro)
        assert waiting is not None and waiting["media"][0] == 6


def card_with_part_in_the_wal(root: Path) -> Path:
    """3 bursts checkpointed into the main file, then 2 more still only in the WAL."""
    settings = trap_settings(root / "trap")
    open_store(settings).close()
    store = open_store(settings)
    queue_captures(store, 3, frames=2)
    store.close()
    store = open_store(settings)
    try:
        queue_captures(store, 2, frames=2, seed=1)
        card = root / "card"
        shutil.copytree(settings.storage.data_dir, card)
    finally:
        store.close()
    (card / f"{DB_NAME}-shm").unlink()
    return card


def test_when_the_wal_cannot_be_read_the_state_says_counts_may_be_low(tmp_path, monkeypatch):
    card = card_with_part_in_the_wal(tmp_path)
    wal_bytes = (card / f"{DB_NAME}-wal").stat().st_size
    with read_only_mount(card, tmp_path / "ro") as ro:
        assert counts(ro) == (5, 10, 15)  # with scratch space: everything, the WAL included
        monkeypatch.setattr(tempfile, "tempdir", str(ro))  # no scratch space: read-only too
        health = inspect(ro)
        report = status_of(ro, tmp_path)
        health_retrieve, _ = waiting_on(ro)
    assert health.read_via == "immutable-no-wal" and health.wal_unread_bytes == wal_bytes
    assert f"{wal_bytes} bytes of WAL not readable: counts may be low" in health.detail
    assert health.counts["events"] == 3  # what the main file alone holds: said to be low
    assert "counts may be low" in report["database"]
    assert health_retrieve.wal_unread_bytes == wal_bytes  # retrieve will not claim "all sent"


def test_when_everything_is_in_an_unreadable_wal_the_store_is_not_called_empty(
    tmp_path, monkeypatch
):
    card = card_as_left_by_a_power_cut(tmp_path)
    (card / f"{DB_NAME}-shm").unlink()
    with read_only_mount(card, tmp_path / "ro") as ro:
        monkeypatch.setattr(tempfile, "tempdir", str(ro))
        health = inspect(ro)
        report = status_of(ro, tmp_path)
    assert (health.state, health.reason) == (StoreState.UNREADABLE, "read_only")
    assert health.exit_code == Exit.STORE_READ_ONLY
    assert "WAL not readable" in health.message() and "copy" in health.message()
    assert report["events"] is None and report["exit_code"] == Exit.STORE_READ_ONLY


def test_a_copy_without_its_wal_files_shows_real_counts_writable_or_not(tmp_path):
    data_dir = cleanly_closed_card(tmp_path)
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy2(data_dir / DB_NAME, copy / DB_NAME)
    shutil.copytree(data_dir / "media", copy / "media")
    assert not (copy / f"{DB_NAME}-wal").exists()
    assert counts(copy) == COUNTS
    (copy / f"{DB_NAME}-wal").unlink(missing_ok=True)
    (copy / f"{DB_NAME}-shm").unlink(missing_ok=True)
    with read_only_mount(copy, tmp_path / "ro") as ro:
        assert counts(ro) == COUNTS
        conn = open_readonly(ro / DB_NAME)
        try:
            assert conn.how == "immutable"
        finally:
            conn.close()


def test_sync_on_a_read_only_card_is_refused_with_exit_13(tmp_path):
    from device.uplink.commands import cmd_sync

    data_dir = cleanly_closed_card(tmp_path)
    with read_only_mount(data_dir, tmp_path / "ro") as ro:
        settings = trap_settings(
            tmp_path / "sync-view", storage={"data_dir": ro}, uplink={"transport": "mqtt"}
        )
        with pytest.raises(UserError) as err:
            cmd_sync(
                argparse.Namespace(timeout=1.0, all=False, plain=True, json=False), lambda: settings
            )
    assert err.value.code == Exit.STORE_READ_ONLY
    assert "read-only" in err.value.message and str(ro) in err.value.message


def test_camtrap_status_on_a_read_only_card_exits_0_with_real_counts(tmp_path):
    card = card_as_left_by_a_power_cut(tmp_path)
    with read_only_mount(card, tmp_path / "ro") as ro:
        settings = trap_settings(tmp_path / "cli", storage={"data_dir": ro})
        config = tmp_path / "camtrap.toml"
        config.write_text(to_toml(settings.model_dump(mode="json")))
        done = subprocess.run(
            [sys.executable, "-m", "device.cli", "--config", str(config), "status", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["events"], report["media"], report["outbox_pending"]) == COUNTS
    assert report["store"]["state"] == "ok"
