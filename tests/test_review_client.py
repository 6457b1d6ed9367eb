"""The scripted reviewer (cloud_stub/review/client.py) against the real review page, served by
``camtrap-cloud serve`` on its own port: it logs in through the form, walks the gallery's
pages, and its reviews land as human observations exactly as a person's would."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from cloud_stub.review.client import ReviewClient, ReviewClientError
from tests.support.browser import (
    FOX,
    PASSWORDS,
    T0,
    Spec,
    add_users,
    default_specs,
    ingest_specs,
    serve,
)

pytestmark = pytest.mark.timeout(120)

# More events than one gallery page holds (24), so walking the pages is part of the test.
EXTRA_FOXES = 20


def human_rows(root: Path) -> dict[str, tuple]:
    db = sqlite3.connect(root / "ingest.sqlite")
    try:
        rows = db.execute(
            "SELECT event_id, observation_type, scientific_name, taxonomy, classified_by, count"
            " FROM observations WHERE classification_method = 'human'"
        ).fetchall()
    finally:
        db.close()
    return {r[0]: r[1:] for r in rows}


@pytest.fixture()
def world(tmp_path: Path) -> tuple[Path, list[Spec]]:
    specs = default_specs() + [
        Spec("trap-c", T0 + timedelta(days=3, minutes=n), **FOX, frames=1)
        for n in range(EXTRA_FOXES)
    ]
    ingest_specs(tmp_path, specs, telemetry=1).close()
    add_users(tmp_path)
    return tmp_path, specs


def test_a_reviewer_logs_in_lists_every_event_across_pages_and_labels_each(world):
    root, specs = world
    with serve(root) as page:
        rita = ReviewClient(page.url)
        rita.login("rita", PASSWORDS["rita"][1])
        listed = rita.event_ids()
        assert sorted(listed) == sorted(s.event_id for s in specs)
        assert len(listed) > 24  # more than one page
        assert rita.event_ids(device="trap-b") == [
            s.event_id
            for s in sorted(specs, key=lambda s: s.start, reverse=True)
            if s.device == "trap-b"
        ]
        fox, leopard, felid, blank, person, vehicle = specs[:6]
        said = {
            fox.event_id: rita.review(fox.event_id, "confirm"),
            leopard.event_id: rita.review(leopard.event_id, "correct", taxon="Felis catus"),
            felid.event_id: rita.review(felid.event_id, "correct", taxon="a cat nobody knows"),
            blank.event_id: rita.review(blank.event_id, "blank"),
            person.event_id: rita.review(person.event_id, "human", count=2),
            vehicle.event_id: rita.review(vehicle.event_id, "vehicle"),
        }
        assert said[leopard.event_id].startswith("saved: correct Felis catus")
        assert said[blank.event_id] == "saved: blank"
        # What is left to review, as the gallery's own filter says.
        left = rita.event_ids(reviewed="no")
    assert sorted(left) == sorted(s.event_id for s in specs[6:])
    stored = human_rows(root)
    assert stored[fox.event_id] == ("animal", "Vulpes vulpes", FOX["taxonomy"], "rita", 1)
    assert stored[leopard.event_id][:4] == (
        "animal",
        "Felis catus",
        "mammalia;carnivora;felidae;felis;catus",
        "rita",
    )
    assert stored[felid.event_id][:3] == ("animal", "a cat nobody knows", None)
    assert stored[blank.event_id] == ("blank", None, None, "rita", None)
    assert stored[person.event_id][0::4] == ("human", 2)
    assert stored[vehicle.event_id][0] == "vehicle"
    assert set(stored) == set(said)


def test_refusals_are_one_line_errors_and_store_nothing(world):
    root, specs = world
    with serve(root) as page:
        with pytest.raises(ReviewClientError, match="wrong user name or password"):
            ReviewClient(page.url).login("rita", "not-her-password")
        vera = ReviewClient(page.url)
        vera.login("vera", PASSWORDS["vera"][1])  # a viewer may look, not review
        assert len(vera.event_ids()) == len(specs)
        with pytest.raises(ReviewClientError, match=r"HTTP 403 \(this needs the reviewer role\)"):
            vera.review(specs[0].event_id, "blank")
        rita = ReviewClient(page.url)
        with pytest.raises(ReviewClientError, match="log in first"):
            rita.review(specs[0].event_id, "blank")
        rita.login("rita", PASSWORDS["rita"][1])
        with pytest.raises(ReviewClientError, match="a correction needs a taxon"):
            rita.review(specs[0].event_id, "correct")
        with pytest.raises(ReviewClientError, match="HTTP 404"):
            rita.review("no-such-event", "blank")
        with pytest.raises(ReviewClientError, match="action 'maybe'"):
            rita.review(specs[0].event_id, "maybe")
    assert human_rows(root) == {}
    with pytest.raises(ReviewClientError, match="cannot reach the page"):
        ReviewClient(page.url, timeout_s=2).login("rita", PASSWORDS["rita"][1])
