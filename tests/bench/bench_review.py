"""Review page at 100,000 events: server-side time of the gallery, its filters and an event.

Rows are generated straight into an ingest store's SQLite file (fast), then pages are rendered
through the Flask app in this process, so the figure is the server's time: query, template,
response. ``bench review_<view>_ms <median> ms``; the target is under 300 ms.
"""

from __future__ import annotations

import json
import random
import sqlite3
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cloud_stub.ingest.store import IngestStore

DEVICES = [f"trap-{i:02d}" for i in range(8)]
SPECIES = [
    ("Vulpes vulpes", "red fox", "mammalia;carnivora;canidae;vulpes;vulpes"),
    ("Panthera pardus", "leopard", "mammalia;carnivora;felidae;panthera;pardus"),
    (
        "Loxodonta africana",
        "African elephant",
        "mammalia;proboscidea;elephantidae;loxodonta;africana",
    ),
    ("Acinonyx jubatus", "cheetah", "mammalia;carnivora;felidae;acinonyx;jubatus"),
    ("Felidae", None, "mammalia;carnivora;felidae;;"),
]
RARE = ("Orycteropus afer", "aardvark", "mammalia;tubulidentata;orycteropodidae;orycteropus;afer")
START = datetime(2025, 1, 1, tzinfo=UTC)
FRAMES = 2


def _details(rng: random.Random, geofenced: bool) -> str:
    rollup = (
        [{"level": "species", "taxon": "x", "score": 0.6, "geofenced": True}] if geofenced else []
    )
    details: dict[str, Any] = {
        "top": [{"label": f"label {i}", "score": round(rng.random(), 4)} for i in range(5)],
        "kinds": {"animal": 0.8, "object": 0.1},
        "from_crop": "full",
        "geofence": {"active": True, "country": "KEN", "admin1": None},
        "rollup": rollup,
        "crops": [{"crop": "full", "box": [0, 0, 1, 1], "nonblank": 0.8, "evidence": 0.8}],
        "frames": FRAMES,
    }
    return json.dumps(details)


def generate(root: Path, events: int = 100_000, seed: int = 7) -> dict[str, Any]:
    """An ingest store with ``events`` bursts over a year; returns facts the checks need."""
    IngestStore(root).close()  # the real schema
    rng = random.Random(seed)
    db = sqlite3.connect(root / "ingest.sqlite")
    db.execute("PRAGMA synchronous=OFF")
    now = datetime.now(UTC).isoformat()
    for device in DEVICES:
        db.execute(
            "INSERT INTO devices(device_id, first_seen, last_seen) VALUES (?, ?, ?)",
            (device, now, now),
        )
        db.execute(
            "INSERT INTO deployments(deployment_id, camera_id, deployment_start, deployment_end) "
            "VALUES (?, ?, ?, ?)",
            (f"dep-{device}", device, START.isoformat(), (START + timedelta(days=365)).isoformat()),
        )
    rare_ids = []
    ev_rows, media_rows, obs_rows = [], [], []
    for i in range(events):
        device = rng.choice(DEVICES)
        dep = f"dep-{device}"
        start = START + timedelta(seconds=rng.randrange(365 * 86400))
        end = start + timedelta(seconds=FRAMES)
        event_id = str(uuid.UUID(int=rng.getrandbits(128)))
        roll = rng.random()
        if i % 25_000 == 0:
            kind, (sci, common, tax) = "animal", RARE
            rare_ids.append(event_id)
        elif roll < 0.45:
            kind, (sci, common, tax) = "blank", (None, None, None)
        elif roll < 0.5:
            kind, (sci, common, tax) = "human", ("Homo sapiens", "human", None)
        elif roll < 0.52:
            kind, (sci, common, tax) = "vehicle", (None, None, None)
        else:
            kind, (sci, common, tax) = "animal", rng.choice(SPECIES)
        prob = round(rng.uniform(0.95, 1.0) if kind == "blank" else rng.uniform(0.3, 1.0), 4)
        blank = round(prob if kind == "blank" else rng.uniform(0.0, 0.5), 4)
        geofenced = kind == "animal" and rng.random() < 0.03
        s, e = start.isoformat(), end.isoformat()
        ev_rows.append(
            (event_id, dep, device, "activityDetection", "pir", s, e, FRAMES, "ntp", 1, blank, now)
        )
        details = _details(rng, geofenced)

        # The columns every machine observation of this event shares, after its level.
        shared = (
            kind,
            sci,
            common,
            "species" if sci else None,
            tax,
            1,
            "machine",
            "efficientnet-lite0-imagenet@1.0.0",
            s,
            prob,
            blank,
            details,
        )

        obs_rows.append((_uuid(rng), dep, None, event_id, s, e, "event", *shared))
        for seq in range(FRAMES):
            media_id = str(uuid.UUID(int=rng.getrandbits(128)))
            media_rows.append(
                (
                    media_id,
                    dep,
                    event_id,
                    device,
                    seq,
                    "activityDetection",
                    s,
                    f"{dep}/{media_id}.jpg",
                    f"{media_id}.jpg",
                    "image/jpeg",
                    "ntp",
                    1,
                    0,
                    f"{dep}/thumbnails/{media_id}.jpg",
                )
            )
            obs_rows.append((_uuid(rng), dep, media_id, event_id, s, e, "media", *shared))
    with db:
        db.executemany(
            "INSERT INTO events(event_id, deployment_id, device_id, capture_method, "
            "trigger_source, event_start, event_end, frame_count, clock_source, clock_synced, "
            "blank_score, received_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            ev_rows,
        )
        db.executemany(
            "INSERT INTO media(media_id, deployment_id, event_id, device_id, seq, capture_method, "
            "timestamp, file_path, file_name, file_mediatype, clock_source, clock_synced, ir_on, "
            "thumbnail_path) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            media_rows,
        )
        db.executemany(
            "INSERT INTO observations(observation_id, deployment_id, media_id, event_id, "
            "event_start, event_end, observation_level, observation_type, scientific_name, "
            "common_name, taxon_level, taxonomy, count, classification_method, classified_by, "
            "classification_timestamp, classification_probability, blank_score, details) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            obs_rows,
        )
    middle = sorted(r[5] for r in ev_rows)[events // 2]
    db.close()
    return {"rare": rare_ids, "middle_start": middle, "devices": DEVICES}


# name -> gallery query string; "{mid}" is a cursor half-way down the newest-first list.
QUERIES = {
    "gallery": "",
    "gallery_deep_page": "after={mid}",
    "filter_device": "device=trap-03",
    "filter_deployment": "deployment=dep-trap-05",
    "filter_date": "date_from=2025-06-01&date_to=2025-06-07",
    "filter_type": "type=vehicle",
    "filter_species": "species=Panthera+pardus",
    "filter_rare_species": "species=Orycteropus+afer",
    "filter_confidence": "conf_min=30&conf_max=35",
    "filter_needs_review": "needs_review=1",
    "filter_combined": "device=trap-01&type=animal&conf_max=40&needs_review=1&date_from=2025-03-01",
    "filter_no_match": "species=Orycteropus+afer&device=trap-07&conf_max=1",
}


def logged_in_client(root: Path) -> Any:
    import re

    from cloud_stub.review.app import ReviewConfig, create_app
    from cloud_stub.review.users import UserStore, users_path

    UserStore(users_path(root)).add("bench", "bench-password-1", "reviewer")
    app = create_app(ReviewConfig(root, secure_cookies=False))
    client = app.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
    client.post(
        "/login", data={"username": "bench", "password": "bench-password-1", "csrf_token": token}
    )
    return client


def timed(client: Any, path: str, repeat: int = 7) -> tuple[float, Any]:
    times, response = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200, (path, response.status_code)
    times.sort()
    return times[len(times) // 2], response


def main() -> None:
    from urllib.parse import quote

    from tests.bench.common import emit

    with tempfile.TemporaryDirectory(prefix="camtrap-review-bench-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        facts = generate(root)
        emit("review_generate_100k_s", time.perf_counter() - t0, "s")
        client = logged_in_client(root)
        mid = quote(f"{facts['middle_start']}|~")
        for name, query in QUERIES.items():
            ms, _ = timed(client, "/captures?" + query.format(mid=mid))
            emit(f"review_{name}_ms", ms, "ms")
        ms, _ = timed(client, f"/events/{facts['rare'][0]}?needs_review=1")
        emit("review_event_ms", ms, "ms")
        ms, _ = timed(client, "/fleet")
        emit("review_fleet_ms", ms, "ms")


if __name__ == "__main__":
    main()


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128)))
