"""`make demo`, as a test: one trap's life end to end with the real programs, the learning loop
included (review through the page, a head trained, sent and served)."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MODEL = "efficientnet-lite0-imagenet@1.0.1"
HEAD = "demo-head@1.0.0"

pytestmark = pytest.mark.timeout(900)


def makefile_triggers() -> str:
    """The --triggers `make demo` passes: the test runs the demo the Makefile runs."""
    found = re.search(r"camtrap-cloud demo .*--triggers (\d+)", (REPO / "Makefile").read_text())
    assert found, "the Makefile's demo target names --triggers"
    return found.group(1)


def pack_bytes(pack: Path) -> int:
    return sum(p.stat().st_size for p in pack.rglob("*") if p.is_file())


def test_the_demo_provisions_captures_syncs_updates_learns_a_head_and_exports(tmp_path):
    work = tmp_path / "demo"
    triggers = makefile_triggers()
    command = [sys.executable, "-m", "cloud_stub.cli", "demo", "--workdir", str(work)]
    result = subprocess.run(
        [*command, "--triggers", triggers],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=840,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    last = result.stdout.strip().splitlines()[-1]
    fields = dict(re.findall(r"(\w+)=(\S+)", last))
    assert fields["triggers"] == triggers and fields["lost"] == "0"
    assert fields["duplicates_stored"] == "0"
    assert int(fields["delivered"]) > 0 and int(fields["stored"]) == int(fields["media"])
    assert fields["model"] == MODEL
    # The head trained from the reviews served: a few kilobytes against the full pack's MBs.
    assert fields["head"] == HEAD
    full_pack = pack_bytes(work / "cloud" / "models" / MODEL)
    assert 0 < int(fields["head_bytes"]) * 50 <= full_pack, (fields["head_bytes"], full_pack)

    # The reviews the scripted reviewer posted through the page are the human observations.
    assert "events through the review page" in result.stdout
    package = work / "cloud" / "camtrap-dp" / "datapackage.json"
    assert f"Camtrap DP package: {package}" in result.stdout
    descriptor = json.loads(package.read_text())
    assert {r["name"] for r in descriptor["resources"]} >= {"deployments", "media", "observations"}
    with (package.parent / "observations.csv").open(newline="") as handle:
        observations = list(csv.DictReader(handle))
    by: dict[str, set[str]] = defaultdict(set)
    for o in observations:
        by[o["classificationMethod"]].add(o["classifiedBy"])
    assert by["human"] == {"demo-reviewer"}
    # Provenance: the next day's events name the backbone and the head.
    assert f"{MODEL}+{HEAD}" in by["machine"], by["machine"]
    deployments = (package.parent / "deployments.csv").read_text()
    assert "-2.3333" in deployments, "coordinates come from the provisioning record"
    assert any((work / "cloud" / "report").glob("*.png"))
    # After the sync, the OTA installs and the head, the cloud's view of the trap is the latest.
    summary = (work / "cloud" / "report" / "summary.txt").read_text()
    health = summary.split("latest health per device:", 1)[1]
    # (queue 0 and the last sync after a drain: tests/test_fleet_latest_state.py)
    assert f"model {MODEL}, head {HEAD}" in health, health
    # The README shows the line the demo really prints: same fields, same order, and the
    # fields it says never vary have the values the demo gave.
    readme = (REPO / "README.md").read_text()
    shown = next(line for line in readme.splitlines() if line.startswith("demo: triggers="))
    readme_fields = dict(re.findall(r"(\w+)=(\S+)", shown))
    assert list(readme_fields) == list(fields)
    for fixed in ("triggers", "failed", "lost", "duplicates_stored", "model", "head"):
        assert readme_fields[fixed] == fields[fixed], fixed
