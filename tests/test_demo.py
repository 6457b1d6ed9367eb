"""`make demo`, as a test: one trap's life end to end with the real programs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path


def test_the_demo_provisions_captures_offline_syncs_updates_and_exports(tmp_path):
    work = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "cloud_stub.cli", "demo", "--workdir", str(work), "--triggers", "2"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    last = result.stdout.strip().splitlines()[-1]
    fields = dict(re.findall(r"(\w+)=(\S+)", last))
    assert fields["triggers"] == "2" and fields["lost"] == "0"
    assert fields["duplicates_stored"] == "0"
    assert int(fields["delivered"]) > 0 and int(fields["stored"]) == int(fields["media"])
    assert fields["model"] == "efficientnet-lite0-imagenet@1.0.1"
    package = work / "cloud" / "camtrap-dp" / "datapackage.json"
    assert f"Camtrap DP package: {package}" in result.stdout
    descriptor = json.loads(package.read_text())
    assert {r["name"] for r in descriptor["resources"]} >= {"deployments", "media", "observations"}
    deployments = (package.parent / "deployments.csv").read_text()
    assert "-2.3333" in deployments, "coordinates come from the provisioning record"
    assert any((work / "cloud" / "report").glob("*.png"))
    # After the sync and the OTA install, the cloud's view of the trap is the latest one.
    summary = (work / "cloud" / "report" / "summary.txt").read_text()
    health = summary.split("latest health per device:", 1)[1]
    # (queue 0 and the last sync after a drain: tests/test_fleet_latest_state.py)
    assert "model efficientnet-lite0-imagenet@1.0.1" in health, health
    # The README shows the line the demo really prints: same fields, same order, and the
    # fields it says never vary have the values the demo gave.
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    shown = next(line for line in readme.splitlines() if line.startswith("demo: triggers="))
    readme_fields = dict(re.findall(r"(\w+)=(\S+)", shown))
    assert list(readme_fields) == list(fields)
    for fixed in ("failed", "lost", "duplicates_stored", "model"):
        assert readme_fields[fixed] == fields[fixed], fixed
