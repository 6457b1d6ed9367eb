"""The captures view and the review contract, through the Flask app on a real ingest store."""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import datetime
from pathlib import Path

import pytest

from cloud_stub.review import captures
from cloud_stub.review.app import ReviewConfig, create_app
from tests.support.browser import FOX, PASSWORDS, T0, Spec, add_users, default_specs, ingest_specs


@pytest.fixture()
def world(tmp_path: Path) -> tuple[Path, list[Spec]]:
    specs = default_specs()
    ingest_specs(tmp_path, specs).close()
    add_users(tmp_path)
    return tmp_path, specs


def login(app, username: str):
    client = app.test_client()
    page = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post(
        "/login",
        data={"username": username, "password": PASSWORDS[username][1], "csrf_token": token},
    )
    assert response.status_code == 302, response.text
    return client, token


def shown(client, query: str = "") -> list[str]:
    """Event ids on one gallery page, in order."""
    page = client.get(f"/captures?{query}")
    assert page.status_code == 200
    return re.findall(r'data-event="([^"]+)"', page.text)


def csrf_of(client, event_id: str) -> str:
    page = client.get(f"/events/{event_id}").text
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def rows(root: Path, sql: str, *params) -> list[dict]:
    db = sqlite3.connect(root / "ingest.sqlite")
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute(sql, params)]
    finally:
        db.close()


def ids(specs: list[Spec], pick) -> list[str]:
    """Ids of the specs ``pick`` accepts, newest first (the gallery's order)."""
    chosen = sorted((s for s in specs if pick(s)), key=lambda s: s.start, reverse=True)
    return [s.event_id for s in chosen]


def test_gallery_lists_every_event_newest_first_with_thumbnails_and_prediction(world):
    root, specs = world
    client, _ = login(create_app(ReviewConfig(root, secure_cookies=False)), "vera")
    assert shown(client) == ids(specs, lambda s: True)
    page = client.get("/captures").text
    assert "red fox" in page and "93%" in page  # label and confidence of the first fox
    thumbs = re.findall(r'src="(/media/[^"]+/thumbnail)"', page)
    assert len(thumbs) == sum(min(s.frames, 4) for s in specs)
    image = client.get(thumbs[0])
    assert image.status_code == 200 and image.mimetype == "image/jpeg"
    assert image.data[:2] == b"\xff\xd8"


@pytest.mark.parametrize(
    ("query", "pick"),
    [
        ("device=trap-b", lambda s: s.device == "trap-b"),
        ("deployment=dep-trap-a", lambda s: s.device == "trap-a"),
        ("date_from=2026-05-02&date_to=2026-05-02", lambda s: s.start.day == 2),
        ("date_to=2026-05-01", lambda s: s.start.day == 1),
        ("type=blank", lambda s: s.type == "blank"),
        ("species=Vulpes+vulpes", lambda s: s.scientific == "Vulpes vulpes"),
        ("species=red+fox", lambda s: s.scientific == "Vulpes vulpes"),  # common name works too
        ("conf_min=50&conf_max=90", lambda s: 0.5 <= (s.probability or 0) <= 0.9),
        # below 65% confidence, or a geofence rollup
        ("needs_review=1", lambda s: (s.probability or 0) < 0.65 or s.geofenced),
        (
            "device=trap-a&type=animal&conf_max=60",
            lambda s: s.device == "trap-a" and s.type == "animal" and (s.probability or 0) <= 0.6,
        ),
    ],
)
def test_each_filter_selects_exactly_the_matching_events(world, query, pick):
    root, specs = world
    client, _ = login(create_app(ReviewConfig(root, secure_cookies=False)), "vera")
    assert shown(client, query) == ids(specs, pick)


def test_a_bad_filter_value_is_explained_not_crashed_on(world):
    root, _ = world
    client, _ = login(create_app(ReviewConfig(root, secure_cookies=False)), "vera")
    page = client.get("/captures?date_from=yesterday&conf_min=140")
    assert page.status_code == 200
    assert "YYYY-MM-DD" in page.text and "percentage" in page.text


def test_keyset_pages_walk_every_event_once_both_ways(world):
    root, specs = world
    app = create_app(ReviewConfig(root, secure_cookies=False))
    with app.app_context():
        from cloud_stub.review.app import db

        forward, cursor, pages = [], "", []
        while True:
            page = captures.gallery(db(), captures.Filters(), threshold=0.65, after=cursor, limit=3)
            pages.append(page)
            forward += [r["event_id"] for r in page.rows]
            if not page.older:
                break
            cursor = page.older
        assert forward == ids(specs, lambda s: True)
        assert pages[0].newer is None
        back = captures.gallery(
            db(), captures.Filters(), threshold=0.65, before=pages[-1].newer, limit=3
        )
        assert [r["event_id"] for r in back.rows] == [r["event_id"] for r in pages[-2].rows]


def review(client, token, event_id, **form):
    return client.post(f"/events/{event_id}/review", data={"csrf_token": token, **form})


def test_confirm_adds_a_human_observation_next_to_the_untouched_machine_one(world):
    root, specs = world
    fox = specs[0]
    machine_before = rows(root, "SELECT * FROM observations WHERE event_id = ?", fox.event_id)
    client, _ = login(create_app(ReviewConfig(root, secure_cookies=False)), "rita")
    response = review(client, csrf_of(client, fox.event_id), fox.event_id, action="confirm")
    assert response.status_code == 302
    after = rows(root, "SELECT * FROM observations WHERE event_id = ?", fox.event_id)
    assert [r for r in after if r["classification_method"] == "machine"] == machine_before
    (human,) = [r for r in after if r["classification_method"] == "human"]
    machine_event = next(r for r in machine_before if r["observation_level"] == "event")
    assert human["classified_by"] == "rita"
    assert human["observation_level"] == "event" and human["media_id"] is None
    assert (human["observation_type"], human["scientific_name"], human["taxonomy"]) == (
        "animal",
        FOX["scientific"],
        FOX["taxonomy"],
    )
    assert datetime.fromisoformat(human["classification_timestamp"]).utcoffset() is not None
    assert json.loads(human["details"]) == {
        "reviews": machine_event["observation_id"],
        "action": "confirm",
    }


def test_correct_picks_a_pack_taxon_or_keeps_a_typed_one_and_sets_the_count(world):
    root, specs = world
    leopard, blank = specs[1], specs[3]
    client, _ = login(create_app(ReviewConfig(root, secure_cookies=False)), "rita")
    token = csrf_of(client, leopard.event_id)
    review(client, token, leopard.event_id, action="correct", taxon="cheetah", count="2")
    review(client, token, blank.event_id, action="correct", taxon="Genetta tigrina", count="1")
    (cheetah,) = rows(
        root,
        "SELECT * FROM observations WHERE event_id = ? AND classification_method = 'human'",
        leopard.event_id,
    )
    assert (cheetah["scientific_name"], cheetah["common_name"], cheetah["taxon_level"]) == (
        "Acinonyx jubatus",
        "cheetah",
        "species",
    )
    assert cheetah["taxonomy"] == "mammalia;carnivora;felidae;acinonyx;jubatus"
    assert cheetah["count"] == 2
    (typed,) = rows(
        root,
        "SELECT * FROM observations WHERE event_id = ? AND classification_method = 'human'",
        blank.event_id,
    )
    assert (typed["observation_type"], typed["scientific_name"], typed["taxonomy"]) == (
        "animal",
        "Genetta tigrina",
        None,
    )


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ("blank", ("blank", None, None)),
        ("human", ("human", "Homo sapiens", 3)),
        ("vehicle", ("vehicle", None, 3)),
    ],
)
def test_blank_human_and_vehicle_are_one_action_each(world, action, expected):
    root, specs = world
    fox = specs[0]
    client, _ = login(create_app(ReviewConfig(root, secure_cookies=False)), "rita")
    review(client, csrf_of(client, fox.event_id), fox.event_id, action=action, count="3")
    (human,) = rows(
        root,
        "SELECT * FROM observations WHERE event_id = ? AND classification_method = 'human'",
        fox.event_id,
    )
    assert (human["observation_type"], human["scientific_name"], human["count"]) == expected


def test_a_second_review_supersedes_the_first_and_the_export_rule_takes_the_latest(world):
    from cloud_stub.export.preference import preferred_observations

    root, specs = world
    fox = specs[0]
    client, _ = login(create_app(ReviewConfig(root, secure_cookies=False)), "rita")
    token = csrf_of(client, fox.event_id)
    review(client, token, fox.event_id, action="confirm")
    review(client, token, fox.event_id, action="correct", taxon="grey fox")
    everything = rows(root, "SELECT * FROM observations WHERE event_id = ?", fox.event_id)
    chosen = preferred_observations(everything)
    assert [(r["classification_method"], r["scientific_name"]) for r in chosen] == [
        ("human", "Urocyon cinereoargenteus")
    ]
    latest = chosen[0]
    first = next(
        r for r in everything if json.loads(r["details"] or "{}").get("action") == "confirm"
    )
    assert json.loads(latest["details"])["supersedes"] == first["observation_id"]


def test_after_a_review_the_page_moves_on_and_needs_review_drops_the_event(world):
    root, _ = world
    client, _ = login(create_app(ReviewConfig(root, secure_cookies=False)), "rita")
    queue = shown(client, "needs_review=1")
    token = csrf_of(client, queue[0])
    response = client.post(
        f"/events/{queue[0]}/review?needs_review=1", data={"csrf_token": token, "action": "blank"}
    )
    assert response.headers["Location"].startswith(f"/events/{queue[1]}?")
    assert shown(client, "needs_review=1") == queue[1:]
    assert shown(client, "reviewed=yes") == [queue[0]]


def test_confirming_an_unknown_is_refused_with_a_reason(world, tmp_path):
    root, _ = world
    unknown = Spec("trap-a", T0, type="unknown", probability=0.3)
    ingest_specs(root, [unknown], telemetry=0).close()
    client, _ = login(create_app(ReviewConfig(root, secure_cookies=False)), "rita")
    response = review(client, csrf_of(client, unknown.event_id), unknown.event_id, action="confirm")
    assert response.status_code == 302
    assert "no label to confirm" in client.get(response.headers["Location"]).text
    assert not rows(root, "SELECT 1 FROM observations WHERE classification_method = 'human'")


def test_taxon_search_serves_the_pack_taxonomy_with_its_ancestors(world):
    root, _ = world
    client, _ = login(create_app(ReviewConfig(root, secure_cookies=False)), "vera")
    names = client.get("/api/taxa?q=fox").json
    assert "Vulpes vulpes — red fox (species)" in names
    assert "Felidae (family)" in client.get("/api/taxa?q=felidae").json
