"""The fleet page shows each trap's battery, shedding steps, power profile and the days left
that the trap's own energy model gives from the counters of its newest heartbeat."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cloud_stub.ingest.core import Incoming, Ingestor
from cloud_stub.review.app import ReviewConfig, create_app
from device.contracts.energy import FALLBACK_BOARD, Counters, budget
from device.contracts.protocol import Telemetry, encode
from tests.support.browser import PASSWORDS, add_users

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DAY = 86400.0


def power_beat(device: str, n: int, **power: object) -> Telemetry:
    return Telemetry(
        v=3,
        device_id=device,
        item_id=f"tel:{device}:{n}",
        sent_at=T0 + timedelta(hours=n),
        queue_depth={},
        **power,  # type: ignore[arg-type]
    )


def plain_beat(device: str) -> Telemetry:
    return Telemetry(device_id=device, item_id=f"tel:{device}:0", sent_at=T0, queue_depth={})


def ingest(root: Path, beats: list[Telemetry]) -> None:
    ingestor = Ingestor(root)
    try:
        for beat in beats:
            outcome = ingestor.handle(
                Incoming(
                    f"camtrap/{beat.device_id}/up/telemetry",
                    beat.device_id,
                    "telemetry",
                    encode(beat),
                )
            )
            assert outcome.rejected is None, outcome.rejected
    finally:
        ingestor.close()


def fleet_page(root: Path) -> dict[str, dict[str, str]]:
    """Device -> {column class: cell text} of the fleet page a logged-in viewer gets."""
    add_users(root)
    client = create_app(ReviewConfig(root, secure_cookies=False)).test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
    assert token is not None
    client.post(
        "/login",
        data={"username": "vera", "password": PASSWORDS["vera"][1], "csrf_token": token.group(1)},
    )
    page = client.get("/fleet").text
    rows: dict[str, dict[str, str]] = {}
    for row in re.findall(r"<tr>(.*?)</tr>", page, re.S):
        device = re.search(r'device=([^"&]+)"', row)
        if device is None:
            continue
        cells = dict(re.findall(r'<td class="(battery|shed|profile|days)">(.*?)</td>', row, re.S))
        # Drop the sparkline SVG: the figure is the text before it.
        rows[device.group(1)] = {
            k: re.sub(r"<svg.*", "", v, flags=re.S).strip() for k, v in cells.items()
        }
    return rows


COUNTERS = {
    "counted_s": 3 * DAY,
    "camera_on_s": 0.2 * DAY,
    "radio_on_s": 0.5 * DAY,
    "captures": 300,
    "cpu_s": {"vision": 900.0, "capture": 120.0, "other": 40.0},
}


def test_each_trap_shows_battery_shedding_profile_and_days_left_from_its_newest_heartbeat(
    tmp_path,
):
    ingest(
        tmp_path,
        [
            power_beat(
                "trap-a",
                0,
                power_profile="always-ready",
                board="pi4",
                battery_pct=90.0,
                battery_wh=100.0,
                shed_level=0,
                **COUNTERS,
            ),
            # The newest heartbeat wins: the battery has run down and two steps are shed.
            power_beat(
                "trap-a",
                5,
                power_profile="low-power",
                board="pi4",
                battery_pct=22.0,
                battery_wh=100.0,
                shed_level=2,
                **COUNTERS,
            ),
            power_beat(
                "trap-b", 0, power_profile="scheduled", board="zero2w", battery_wh=50.0, **COUNTERS
            ),
            plain_beat("trap-old"),
        ],
    )
    rows = fleet_page(tmp_path)
    expected = budget(
        Counters(
            uptime_s=COUNTERS["counted_s"],  # type: ignore[arg-type]
            camera_on_s=COUNTERS["camera_on_s"],  # type: ignore[arg-type]
            radio_on_s=COUNTERS["radio_on_s"],  # type: ignore[arg-type]
            captures=300,
            cpu_s=COUNTERS["cpu_s"],  # type: ignore[arg-type]
        ),
        "pi4",
        100.0,
        22.0,
    )
    assert expected.days_left is not None
    assert rows["trap-a"] == {
        "battery": "22%",
        "shed": "blank_media, classify",
        "profile": "low-power",
        "days": f"{expected.days_left:.1f}",
    }
    # No battery percent (no gauge): what a full charge lasts, said as such.
    b = rows["trap-b"]
    assert b["battery"] == "–" and b["shed"] == "none" and b["profile"] == "scheduled"
    assert b["days"].endswith(" on a full charge")
    # A trap that sends no power figures (before v3) shows dashes, not zeros.
    assert rows["trap-old"] == {"battery": "–", "shed": "–", "profile": "–", "days": "–"}


def test_under_an_hour_of_counters_the_days_are_marked_rough(tmp_path):
    ingest(
        tmp_path,
        [
            power_beat(
                "trap-new",
                0,
                power_profile="low-power",
                board="pi3",
                battery_pct=100.0,
                battery_wh=60.0,
                counted_s=900.0,
                camera_on_s=30.0,
            )
        ],
    )
    assert fleet_page(tmp_path)["trap-new"]["days"].startswith("~")


def test_a_board_the_table_does_not_know_falls_back_rather_than_reading_the_servers_tree(
    tmp_path,
):
    ingest(
        tmp_path,
        [
            power_beat(
                "trap-x",
                0,
                power_profile="low-power",
                board="auto",
                battery_pct=50.0,
                battery_wh=100.0,
                **COUNTERS,
            )
        ],
    )
    counters = Counters(
        uptime_s=COUNTERS["counted_s"],  # type: ignore[arg-type]
        camera_on_s=COUNTERS["camera_on_s"],  # type: ignore[arg-type]
        radio_on_s=COUNTERS["radio_on_s"],  # type: ignore[arg-type]
        captures=300,
        cpu_s=COUNTERS["cpu_s"],  # type: ignore[arg-type]
    )
    fallback = budget(counters, FALLBACK_BOARD, 100.0, 50.0).days_left
    assert fallback is not None
    assert fleet_page(tmp_path)["trap-x"]["days"] == f"{fallback:.1f}"
