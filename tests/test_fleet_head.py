"""The fleet page and the report show the model and the head each trap serves, from the
``model_version`` of its newest heartbeat (``name@v``, or ``backbone@v+head@v``)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cloud_stub.ingest.core import Incoming, Ingestor
from cloud_stub.models.serving import Serving, parse_serving
from cloud_stub.report.data import load
from cloud_stub.report.report import summary
from cloud_stub.review.app import ReviewConfig, create_app
from device.protocol import Telemetry, encode
from tests.support.browser import PASSWORDS, add_users

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
BACKBONE = "efficientnet-lite0-imagenet@1.0.1"
HEAD = "site-head-dep-1@1.0.0"


def heartbeats(root: Path, beats: list[tuple[str, int, str]]) -> None:
    """(device, minutes after T0, model_version) heartbeats through the real ingest."""
    ingestor = Ingestor(root)
    try:
        for n, (device, minutes, model) in enumerate(beats):
            message = Telemetry(
                device_id=device,
                item_id=f"telemetry:{device}:{n}",
                sent_at=T0 + timedelta(minutes=minutes),
                free_disk_bytes=10**10,
                total_disk_bytes=3 * 10**10,
                queue_depth={"capture": 0},
                model_version=model,
                agent_version="0.1.0",
                last_sync_at=T0 + timedelta(minutes=minutes),
            )
            outcome = ingestor.handle(
                Incoming(f"camtrap/{device}/up/telemetry", device, "telemetry", encode(message))
            )
            assert outcome.rejected is None, outcome.rejected
    finally:
        ingestor.close()


def fleet_cells(root: Path) -> dict[str, tuple[str, str]]:
    """Device -> (model cell, head cell) of the fleet page a logged-in viewer gets."""
    app = create_app(ReviewConfig(root, secure_cookies=False))
    client = app.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
    assert token is not None
    client.post(
        "/login",
        data={"username": "vera", "password": PASSWORDS["vera"][1], "csrf_token": token.group(1)},
    )
    page = client.get("/fleet").text
    cells = {}
    for row in re.findall(r"<tr>(.*?)</tr>", page, re.S):
        device = re.search(r'device=([^"&]+)"', row)
        model = re.search(r'<td class="model">([^<]*)</td>', row)
        head = re.search(r'<td class="head">([^<]*)</td>', row)
        if device and model and head:
            cells[device.group(1)] = (model.group(1), head.group(1))
    return cells


def test_the_fleet_page_shows_the_backbone_and_the_head_of_the_newest_heartbeat(tmp_path):
    heartbeats(
        tmp_path,
        [
            ("trap-full", 0, BACKBONE),
            ("trap-head", 0, BACKBONE),  # before the head installed
            ("trap-head", 30, f"{BACKBONE}+{HEAD}"),
            ("trap-back", 0, f"{BACKBONE}+{HEAD}"),
            ("trap-back", 60, BACKBONE),  # the head rolled back: the full pack again
        ],
    )
    add_users(tmp_path)
    assert fleet_cells(tmp_path) == {
        "trap-back": (BACKBONE, "none"),
        "trap-full": (BACKBONE, "none"),
        "trap-head": (BACKBONE, HEAD),
    }


def test_the_report_names_the_head_next_to_the_model(tmp_path):
    heartbeats(tmp_path, [("trap-full", 0, BACKBONE), ("trap-head", 5, f"{BACKBONE}+{HEAD}")])
    health = summary(load(tmp_path)).split("latest health per device:", 1)[1]
    lines = {line.split(":", 1)[0].strip(): line for line in health.strip().splitlines()}
    assert f"model {BACKBONE}, head {HEAD}" in lines["trap-head"]
    assert f"model {BACKBONE}, head none" in lines["trap-full"]


def test_what_a_trap_serves_is_parsed_in_one_place():
    assert parse_serving(BACKBONE) == Serving(BACKBONE)
    assert parse_serving(f"{BACKBONE}+{HEAD}") == Serving(BACKBONE, HEAD)
    assert parse_serving(f"{BACKBONE}+{HEAD}").classified_by == f"{BACKBONE}+{HEAD}"
    assert parse_serving(None) is None and parse_serving("  ") is None
