"""``camtrap-cloud`` on a damaged, unreadable or read-only ``ingest.sqlite``.

Every command says one line naming the file and the reason and exits non-zero, without a
traceback; on a healthy read-only copy (a real read-only bind mount) the commands that only
read (export, report, handoff, the review app) still work, and ingest refuses to start.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_stub.ingest.store import StoreError, open_store_db
from device.exitcodes import Exit
from tests.support.broker import free_port
from tests.support.cloud_data import Site, add_telemetry, fill_store

pytestmark = pytest.mark.timeout(120)


def cloud(*args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "cloud_stub.cli", "--log-level", "ERROR", *args],
        capture_output=True,
        text=True,
        timeout=90,
        stdin=subprocess.DEVNULL,
    )


def commands(root: Path, out: Path) -> dict[str, list[str]]:
    return {
        "export": ["export", "camtrap-dp", str(out / "dp"), "--root", str(root)],
        "report": ["report", "--root", str(root), "--out", str(out / "report")],
        "handoff": [
            "handoff",
            "--out",
            str(out / "handoff"),
            "--ingest-root",
            str(root),
            "--include-machine",
            "--dry-run",
            "--min-per-class",
            "1",
        ],
        "serve": ["serve", "--root", str(root), "--insecure-http", "--port", str(free_port())],
        "ingest": [
            "ingest",
            "--root",
            str(root),
            "--mqtt-host",
            "127.0.0.1",
            "--mqtt-port",
            str(free_port()),
            "--connect-timeout",
            "1",
        ],
    }


def healthy(root: Path) -> Path:
    sites = [Site("dep-a", "trap-1", 51.2, 4.1)]
    fill_store(root, sites, captures=4, frames=2)
    add_telemetry(root, "trap-1", hours=2)
    db = sqlite3.connect(root / "ingest.sqlite")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.execute("PRAGMA journal_mode=DELETE")  # one self-contained file to damage or copy
    db.close()
    return root / "ingest.sqlite"


def assert_one_line(result: subprocess.CompletedProcess[str], path: Path, reason: str, code: int):
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0] and reason in lines[0], lines[0]
    assert lines[0].startswith("camtrap-cloud ")


def corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    page = 4096
    for start in range(page, len(data), page * 2):  # every other page after the header
        data[start : start + page] = b"\xa5" * min(page, len(data) - start)
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size // 2)


def not_a_database(path: Path) -> None:
    path.write_text("this is a spreadsheet export, not SQLite\n" * 200)


DAMAGE = {
    "corrupt": (corrupt, "damaged"),
    "truncated": (truncate, "damaged"),
    "not-a-database": (not_a_database, "not an SQLite database"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("command", ["export", "report", "handoff", "serve", "ingest"])
def test_a_damaged_store_gives_one_line_and_exit_store_unreadable(tmp_path, damage, command):
    path = healthy(tmp_path / "ingest")
    spoil, reason = DAMAGE[damage]
    spoil(path)
    result = cloud(*commands(tmp_path / "ingest", tmp_path / "out")[command])
    assert_one_line(result, path, reason, Exit.STORE_UNREADABLE)


@pytest.mark.parametrize("command", ["export", "report", "handoff", "serve", "ingest"])
def test_an_unreadable_store_names_the_file_and_the_permission(tmp_path, command):
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) is needed to drop root's file-permission override")
    path = healthy(tmp_path / "ingest")
    path.chmod(0)
    # Root reads any file: drop CAP_DAC_OVERRIDE/READ_SEARCH so the mode counts, as for a user.
    drop = ("setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search")
    result = cloud(*commands(tmp_path / "ingest", tmp_path / "out")[command], prefix=drop)
    assert_one_line(result, path, "permission denied", Exit.STORE_UNREADABLE)


def _is_ro_mount(path: Path) -> bool:
    import os

    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)


@pytest.fixture
def ro_store(tmp_path: Path) -> Iterator[Path]:
    """The store made first, then its directory bind-mounted read-only onto itself."""
    root = tmp_path / "ro" / "ingest"
    healthy(root)
    db = sqlite3.connect(root / "ingest.sqlite")
    db.execute("PRAGMA journal_mode=WAL")  # as ingest leaves it: readers would need -shm
    db.close()
    mounted = subprocess.run(["mount", "--bind", str(root), str(root)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot bind mount: {mounted.stderr.strip()}")
    try:
        ro = subprocess.run(["mount", "-o", "remount,bind,ro", str(root)], capture_output=True)
        if ro.returncode != 0:
            pytest.skip(f"cannot remount read-only: {ro.stderr.strip()}")
        yield root
    finally:
        subprocess.run(["umount", str(root)], check=False)


def test_on_a_read_only_mount_readers_work_and_ingest_refuses(ro_store, tmp_path):
    out = tmp_path / "out"
    cmds = commands(ro_store, out)
    for name in ("export", "report", "handoff"):
        result = cloud(*cmds[name])
        assert result.returncode == 0, (name, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
    assert (out / "dp" / "datapackage.json").is_file()
    assert (out / "report" / "summary.txt").is_file()
    refused = cloud(*cmds["ingest"])
    assert_one_line(refused, ro_store / "ingest.sqlite", "read-only", Exit.STORE_READ_ONLY)
    with pytest.raises(StoreError) as err:
        open_store_db(ro_store, write=True)
    assert err.value.code == Exit.STORE_READ_ONLY


def test_the_review_app_serves_the_fleet_page_from_a_read_only_mount(ro_store):
    from cloud_stub.review.app import ReviewConfig, create_app

    app = create_app(ReviewConfig(root=ro_store, secure_cookies=False))
    with app.app_context():
        from cloud_stub.review import app as review_app
        from cloud_stub.review import fleet

        rows, _ = fleet.fleet(review_app.db(), ro_store)
    assert [r.device_id for r in rows] == ["trap-1"]
    assert rows[0].queue_depth is not None
    assert _is_ro_mount(ro_store)
