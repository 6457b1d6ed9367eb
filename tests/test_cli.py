"""The `camtrap` command line: version, status and simulate, as a technician runs them."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from device import __version__
from tests.support.world import write_jpegs


def camtrap(*args: str, config: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CAMTRAP_")}
    if config is not None:
        full_env["CAMTRAP_CONFIG"] = str(config)
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "device.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=180,
    )


def quiet_clock_config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "camtrap.toml"
    path.write_text(
        f'[clock]\nkernel_status = false\ntimesync_flag = "{tmp_path}/ts"\n'
        f'rtc_device = "{tmp_path}/rtc"\nmanual_marker = "{tmp_path}/manual"\n'
        # Own world: the simulated agent must not dial whatever listens on localhost:8883.
        '[uplink]\ntransport = "none"\n' + extra
    )
    return path


def test_version_is_printed():
    result = camtrap("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"camtrap {__version__}"


def test_simulate_runs_the_agent_end_to_end_and_prints_the_demo_line(tmp_path):
    config = quiet_clock_config(tmp_path)
    result = camtrap(
        "simulate", "--triggers", "3", "--data-dir", str(tmp_path / "d"), config=config
    )
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("demo: triggers=3 events=4 media=10 stored=10 failed=0")
    conn = sqlite3.connect(tmp_path / "d" / "camtrap.db")
    try:
        methods = dict(
            conn.execute(
                "SELECT capture_method, COUNT(*) FROM events GROUP BY capture_method"
            ).fetchall()
        )
    finally:
        conn.close()
    assert methods == {"activityDetection": 3, "timeLapse": 1}


def test_simulate_replays_a_directory_and_reports_bad_frames_as_failed(tmp_path):
    frames = tmp_path / "frames"
    write_jpegs(frames, 2)
    (frames / "zz-broken.jpg").write_bytes(b"\xff\xd8 not really")
    config = quiet_clock_config(tmp_path)
    result = camtrap(
        "simulate",
        "--triggers",
        "2",
        "--images",
        str(frames),
        "--json",
        "--data-dir",
        str(tmp_path / "d"),
        config=config,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["media"] == 7 and summary["failed"] >= 1
    assert summary["stored"] + summary["failed"] == summary["media"]


def test_status_reads_the_store_and_shows_unsynchronised_captures(tmp_path):
    config = quiet_clock_config(tmp_path, f'[storage]\ndata_dir = "{tmp_path}/d"\n')
    assert (
        camtrap(
            "simulate", "--triggers", "1", "--data-dir", str(tmp_path / "d"), config=config
        ).returncode
        == 0
    )
    result = camtrap("status", "--json", config=config)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["events"] == 2 and report["media"] == 4
    # 4 media + 4 thumbnails + 2 event metadata: under the default blank_media_policy
    # ("defer") a blank verdict drops no upload, so the count holds whatever the verdicts.
    assert report["outbox_pending"] == 10
    assert report["clock"] == {"source": "unsynchronised", "synced": False}
    assert report["unsynchronised_captures"] == 4
    assert report["last_capture"] is not None
    assert report["version"] == __version__
    text = camtrap("status", config=config).stdout
    assert "NOT synced" in text and "unsynced captures  4" in text


def test_status_reports_the_clock_source_it_finds(tmp_path):
    config = quiet_clock_config(tmp_path, f'[storage]\ndata_dir = "{tmp_path}/none"\n')
    (tmp_path / "rtc").mkdir()
    report = json.loads(camtrap("status", "--json", config=config).stdout)
    assert report["clock"] == {"source": "rtc", "synced": False}
    (tmp_path / "ts").write_text("")
    report = json.loads(camtrap("status", "--json", config=config).stdout)
    assert report["clock"] == {"source": "ntp", "synced": True}
    # No data dir: the counts are unknown (None), not 0, and the state says why.
    assert report["database"] == "missing" and report["events"] is None
    assert report["store"]["state"] == "no_data_dir"


def test_status_does_not_disturb_a_running_writer(tmp_path):
    """status opens the database read-only: it can neither write nor block the agent."""
    from device.store.db import Database

    data = tmp_path / "d"
    data.mkdir()
    db = Database(data / "camtrap.db")
    config = quiet_clock_config(tmp_path, f'[storage]\ndata_dir = "{data}"\n')
    with db.write() as conn:
        conn.execute("INSERT INTO counters VALUES ('held', 1)")
        result = camtrap("status", "--json", config=config)  # while a write is open
    db.close()
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["counters"] == {}
