"""The review page in a real browser: headless Debian Chromium driven by Playwright.

A reviewer logs in, filters the gallery, opens an event, corrects its label with the keyboard
alone, and the stored observations (and the Camtrap DP export, where installed) then carry the
human label. Each view is saved as a screenshot under the test's tmp dir.
"""

from __future__ import annotations

import csv
import http.server
import importlib.util
import sqlite3
import threading
from pathlib import Path

import pytest

from tests.support.browser import (
    PASSWORDS,
    add_users,
    chromium,
    chromium_available,
    default_specs,
    ingest_specs,
    serve,
)

pytestmark = pytest.mark.skipif(
    not chromium_available(),
    reason="needs Debian's chromium (apt-get install chromium) and playwright (pip)",
)


@pytest.fixture()
def world(tmp_path: Path):
    root = tmp_path / "ingest"
    specs = default_specs()
    ingest_specs(root, specs).close()
    add_users(root)
    return root, specs


def human_rows(root: Path) -> list[dict]:
    db = sqlite3.connect(root / "ingest.sqlite")
    db.row_factory = sqlite3.Row
    try:
        return [
            dict(r)
            for r in db.execute("SELECT * FROM observations WHERE classification_method='human'")
        ]
    finally:
        db.close()


def log_in(page, url: str, username: str) -> None:
    page.goto(f"{url}/captures")
    assert "/login" in page.url  # sent to the login page first
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORDS[username][1])
    page.click("form.login button")
    page.wait_for_url(f"{url}/captures")


def export_observations(root: Path, out: Path) -> list[dict[str, str]] | None:
    """observations.csv of a Camtrap DP export of ``root``, or None if export is not installed."""
    if importlib.util.find_spec("cloud_stub.export.camtrap_dp") is None:
        return None
    from cloud_stub.export.camtrap_dp import run_export
    from cloud_stub.export.source import Selection

    written = run_export(root, out, selection=Selection(skip_unlocated=True), validate=False)
    with open(written.descriptor.parent / "observations.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_log_in_filter_open_and_correct_a_label_with_the_keyboard(world, tmp_path):
    root, specs = world
    leopard = specs[1]  # trap-a, 41% confident: in trap-a's "needs review" queue
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with serve(root) as server, chromium(tmp_path / "profile") as context:
        page = context.new_page()
        page.goto(f"{server.url}/captures")
        page.screenshot(path=shots / "1-login.png")
        log_in(page, server.url, "rita")

        page.select_option("select[name=device]", "trap-a")
        page.check("input[name=needs_review]")
        page.click("form.filters button")
        page.wait_for_url("**/captures?*needs_review=1*")
        cards = page.locator("#gallery .card")
        expected = [
            s.event_id
            for s in sorted(specs, key=lambda s: s.start, reverse=True)
            if s.device == "trap-a" and (s.probability or 0) < 0.65
        ]
        assert [cards.nth(i).get_attribute("data-event") for i in range(cards.count())] == expected
        page.screenshot(path=shots / "2-gallery-filtered.png", full_page=True)

        page.locator(f'.card[data-event="{leopard.event_id}"]').click()
        page.wait_for_url(f"**/events/{leopard.event_id}?*")
        assert "leopard" in page.inner_text("#prediction")
        page.screenshot(path=shots / "3-event.png", full_page=True)

        # Keyboard only: t focuses the taxon search, Enter saves the correction.
        page.keyboard.press("t")
        page.keyboard.type("cheetah")
        page.screenshot(path=shots / "4-event-correcting.png", full_page=True)
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert "saved: correct" in page.inner_text(".flash")
        page.screenshot(path=shots / "5-after-save.png", full_page=True)

        page.goto(f"{server.url}/fleet")
        assert page.locator("#fleet tr").count() == 1 + len({s.device for s in specs})
        assert page.locator("svg.spark").count() > 0
        page.screenshot(path=shots / "6-fleet.png", full_page=True)

    (human,) = human_rows(root)
    assert human["event_id"] == leopard.event_id
    assert (human["scientific_name"], human["classified_by"]) == ("Acinonyx jubatus", "rita")
    exported = export_observations(root, tmp_path / "export")
    if exported is not None:
        mine = [r for r in exported if r["eventID"] == leopard.event_id]
        assert [(r["classificationMethod"], r["scientificName"], r["classifiedBy"]) for r in mine]
        assert all(r["classificationMethod"] == "human" for r in mine), mine
        assert mine[0]["scientificName"] == "Acinonyx jubatus"
    assert sorted(p.name for p in shots.iterdir()) == [
        "1-login.png",
        "2-gallery-filtered.png",
        "3-event.png",
        "4-event-correcting.png",
        "5-after-save.png",
        "6-fleet.png",
    ]


class _Attacker(http.server.BaseHTTPRequestHandler):
    """Another origin on the same host (so the same site: SameSite cookies do not help)."""

    page = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(self.page)

    def log_message(self, *_args) -> None:
        pass


def test_a_form_posted_from_another_origin_is_rejected_in_the_browser(world, tmp_path):
    root, specs = world
    target = specs[0].event_id
    with serve(root) as server, chromium(tmp_path / "profile") as context:
        page = context.new_page()
        log_in(page, server.url, "rita")
        _Attacker.page = (
            f'<form id="f" method="post" action="{server.url}/events/{target}/review">'
            '<input name="action" value="blank"><input name="csrf_token" value="guess"></form>'
            "<script>document.getElementById('f').submit()</script>"
        ).encode()
        attacker = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Attacker)
        threading.Thread(target=attacker.serve_forever, daemon=True).start()
        try:
            with page.expect_response(f"**/events/{target}/review") as answer:
                page.goto(f"http://127.0.0.1:{attacker.server_port}/")
            assert answer.value.status == 403
        finally:
            attacker.shutdown()
    assert human_rows(root) == []
