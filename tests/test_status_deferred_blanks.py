"""``camtrap status`` and the heartbeat say what the trap holds in doubt: the frames judged
blank but kept whole (``vision.blank_media_policy = "defer"``), how many and how many bytes.

Real stores in temp dirs; verdicts through the store's door; the figure must follow what
happens to those frames (sent to the cloud, evicted by retention), not just be there.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from device import protocol
from device.clock import ClockProbe
from device.protocol import Telemetry
from device.status import collect, render
from device.store.media import Media
from device.store.outbox import Outbox
from device.store.retention import Retention
from device.store.store import MediaStore
from device.store.vocabulary import ItemKind, item_id_for
from device.telemetry import Heartbeat
from tests.support.trap_db import Burst, classify, open_store, queue_captures, write_config
from tests.support.world import trap_settings


def frame_bytes(store: MediaStore, bursts: list[Burst]) -> int:
    frames = Media(store.db).get_many([m for b in bursts for m in b.media_ids])
    return sum(f.size or 0 for f in frames.values())


def trap_with_doubt(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Two blank events of two frames (deferred, as the default policy holds them) and a fox."""
    settings = trap_settings(tmp_path, storage={"min_free_bytes": 0})
    store = open_store(settings)
    empty1, empty2, fox = queue_captures(store, 3, frames=2, size=(320, 240))
    classify(store, empty1, kind="blank")
    classify(store, empty2, kind="blank")
    classify(store, fox, kind="animal", probability=0.95)
    return settings, store, empty1, empty2


def heartbeat(store: MediaStore, settings) -> Heartbeat:  # type: ignore[no-untyped-def]
    return Heartbeat(
        "test-trap",
        lambda: store.db,
        store.data_dir,
        ClockProbe(settings.clock),
        interval_s=3600,
        thermal_dir=Path("/nonexistent"),
        uptime_file=Path("/nonexistent"),
    )


def test_status_reports_the_frames_held_as_deferred_blanks_and_follows_them(tmp_path):
    settings, store, empty1, empty2 = trap_with_doubt(tmp_path)
    report = collect(settings)
    assert report["deferred_blanks"] == {
        "frames": 4,
        "bytes": frame_bytes(store, [empty1, empty2]),
    }
    line = next(x for x in render(report).splitlines() if x.startswith("deferred blanks"))
    assert "4 frames" in line

    # One frame reaches the cloud: it is no longer held in doubt on the card alone.
    Outbox(store.db).complete([item_id_for(ItemKind.MEDIA, empty1.media_ids[0])])
    held = collect(settings)["deferred_blanks"]
    assert held["frames"] == 3
    assert held["bytes"] == frame_bytes(store, [empty2]) + frame_bytes(
        store, [Burst(empty1.event_id, empty1.media_ids[1:])]
    )
    # Retention needs room: the deferred blanks go, and the figure says so.
    settings.storage.media_quota_bytes = 1
    retention = Retention(settings, lambda: store.db)
    retention.resync()
    retention.enforce()
    assert collect(settings)["deferred_blanks"] == {"frames": 0, "bytes": 0}
    store.close()


def test_status_json_from_the_command_line_carries_the_deferred_blanks(tmp_path):
    settings, store, empty1, empty2 = trap_with_doubt(tmp_path)
    expected = {"frames": 4, "bytes": frame_bytes(store, [empty1, empty2])}
    store.close()
    config = write_config(settings, tmp_path / "camtrap.toml")
    done = subprocess.run(
        [sys.executable, "-m", "device.cli", "--config", str(config), "status", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["deferred_blanks"] == expected


def test_status_of_an_unreadable_store_does_not_claim_zero_deferred_blanks(tmp_path):
    settings = trap_settings(tmp_path)
    settings.storage.data_dir.rmdir()
    report = collect(settings)
    assert report["deferred_blanks"] is None
    assert "UNKNOWN" in next(
        x for x in render(report).splitlines() if x.startswith("deferred blanks")
    )


def test_the_heartbeat_reports_deferred_blank_frames_and_bytes_on_the_wire(tmp_path):
    settings, store, empty1, empty2 = trap_with_doubt(tmp_path)
    msg = heartbeat(store, settings).collect()
    assert msg.deferred_blank_frames == 4
    assert msg.deferred_blank_bytes == frame_bytes(store, [empty1, empty2])
    assert msg.queue_depth["deferred_blank"] == 4
    wire = json.loads(protocol.encode(msg))
    assert (wire["deferredBlankFrames"], wire["deferredBlankBytes"]) == (
        msg.deferred_blank_frames,
        msg.deferred_blank_bytes,
    )
    again = protocol.decode(protocol.encode(msg))
    assert isinstance(again, Telemetry) and again == msg
    Outbox(store.db).complete([item_id_for(ItemKind.MEDIA, m) for m in empty2.media_ids])
    later = heartbeat(store, settings).collect()
    assert later.deferred_blank_frames == 2
    assert later.deferred_blank_bytes == frame_bytes(store, [empty1])
    store.close()


def test_a_heartbeat_without_the_new_fields_is_still_a_valid_one():
    """Older agents send no deferred-blank figures: ingest still takes their heartbeats."""
    old = (
        b'{"v":1,"type":"telemetry","deviceID":"t","itemID":"tel:1",'
        b'"sentAt":"2026-05-01T12:00:00+00:00"}'
    )
    msg = protocol.decode(old)
    assert isinstance(msg, Telemetry) and msg.deferred_blank_bytes is None
