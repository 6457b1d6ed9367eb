"""The gallery at 100,000 events: every filter answers from indexes, page by page.

Timings are printed, not asserted (this machine is shared); what is asserted is what keeps
pages fast as the store grows: each page walks an index in the gallery's order (no sort of
all matches) and returns the right events.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, quote

import pytest

from cloud_stub.ingest.database import Database
from cloud_stub.ingest.opening import open_store_db
from cloud_stub.review import captures
from tests.bench.bench_review import QUERIES, generate, logged_in_client, timed

EVENTS = 100_000


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    root = tmp_path_factory.mktemp("review-100k")
    facts = generate(root, EVENTS)
    client = logged_in_client(root)  # also creates the review indexes
    return root, facts, client


def _db(root: Path) -> Database:
    """The store as the review page reads it: through the one door."""
    return open_store_db(root, check=False)


def test_the_store_really_holds_100000_events(big):
    root, _, _ = big
    db = _db(root)
    try:
        assert db.execute("SELECT count(*) FROM events").fetchone()[0] == EVENTS
    finally:
        db.close()


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_each_gallery_query_walks_an_index_in_page_order(big, name):
    root, facts, client = big
    mid = f"{facts['middle_start']}|~"
    args = dict(parse_qsl(QUERIES[name].format(mid=quote(mid))))
    after = args.pop("after", "")
    filters = captures.Filters(**{k: v for k, v in args.items()})
    db = _db(root)
    try:
        sql, params, _ = captures.page_query(db, filters, threshold=0.65, after=after)
        plan = " | ".join(r[3] for r in db.execute("EXPLAIN QUERY PLAN " + sql, params))
        rare = filters.species == "Orycteropus afer"
        if rare:  # a handful of matches: sorting them is cheaper than walking 100,000 events
            assert "review_obs_species" in plan, plan
        else:
            assert "USING INDEX review_events_" in plan and "TEMP B-TREE" not in plan, plan
        assert "SCAN o" not in plan and "SCAN observations" not in plan, plan
    finally:
        db.close()
    ms, response = timed(client, "/captures?" + QUERIES[name].format(mid=quote(mid)), repeat=3)
    print(f"review {name}: {ms:.1f} ms")
    assert response.status_code == 200


def test_pages_hold_exactly_the_matching_events_newest_first(big):
    root, facts, _ = big
    db = _db(root)
    try:
        filters = captures.Filters(device="trap-03", type="animal", conf_max="50")
        page = captures.gallery(db, filters, threshold=0.65)
        expected = [
            r[0]
            for r in db.execute(
                "SELECT e.event_id FROM events e JOIN observations o ON o.event_id = e.event_id "
                "AND o.observation_level = 'event' AND o.classification_method = 'machine' "
                "WHERE e.device_id = 'trap-03' AND o.observation_type = 'animal' "
                "AND o.classification_probability <= 0.5 "
                "ORDER BY e.event_start DESC, e.event_id DESC LIMIT ?",
                (captures.PAGE_SIZE,),
            )
        ]
        assert [r["event_id"] for r in page.rows] == expected
        rare = captures.gallery(db, captures.Filters(species="Orycteropus afer"), threshold=0.65)
        assert sorted(r["event_id"] for r in rare.rows) == sorted(facts["rare"])
    finally:
        db.close()
