"""Every reader of the ingest store reads a PostgreSQL store as it reads the SQLite file.

The store is filled through the real ingest (capture messages, then chunked media) on a test's
own database; the export, the report, the hand-off's store source, the training source and the
review page then read it through ``--db URL`` (or its ``url``), and a review written on
PostgreSQL is what the next export says.
"""

from __future__ import annotations

import csv
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from cloud_stub.cli import main as cloud_main
from cloud_stub.export.validate import validate_package
from cloud_stub.handoff.stub_source import stub_records
from cloud_stub.ingest.core import Ingestor
from cloud_stub.ingest.opening import open_store_db
from cloud_stub.review.app import ReviewConfig, create_app
from cloud_stub.training.ingest_source import ingest_images
from device.contracts.exitcodes import Exit
from device.protocol import Observation
from tests.support.browser import PASSWORDS, add_users
from tests.support.messages import capture
from tests.support.ports import reserve_port
from tests.test_ingest_hostile import chunks_of, deliver

pytestmark = pytest.mark.timeout(120)
pytest.importorskip("frictionless")


@dataclass
class Store:
    root: Path  # local media, accounts; the rows are on the server
    url: str
    foxes: list[str]  # event ids the machine called a red fox
    blanks: list[str]  # event ids the machine called blank


def _with_event_verdict(meta, species: str | None):
    """The trap's event-level machine observation next to its per-frame ones."""
    frame = meta.observations[0]
    meta.observations.append(
        Observation(
            observation_id=str(uuid.uuid4()),
            deployment_id=meta.event.deployment_id,
            event_id=meta.event.event_id,
            media_id=None,
            event_start=meta.event.event_start,
            event_end=meta.event.event_end,
            observation_level="event",
            observation_type="animal" if species else "blank",
            scientific_name=species,
            common_name="red fox" if species else None,
            count=1 if species else None,
            classified_by=frame.classified_by,
            classification_timestamp=frame.classification_timestamp,
            classification_probability=0.91,
        )
    )
    return meta


def _run(*argv: str | Path) -> int:
    return cloud_main([str(a) for a in argv])


@pytest.fixture
def store(tmp_path: Path, postgres_db: str) -> Store:
    root = tmp_path / "cloud"
    ingest = Ingestor(root, max_message_bytes=1024 * 1024, db_url=postgres_db)
    foxes, blanks = [], []
    try:
        for device, deployment, species in [
            ("trap-01", "dep-1", "Vulpes vulpes"),
            ("trap-01", "dep-1", "Vulpes vulpes"),
            ("trap-02", "dep-2", "Vulpes vulpes"),
            ("trap-02", "dep-2", None),
        ]:
            meta, files = capture(device, deployment_id=deployment, frames=1, species=species)
            meta = _with_event_verdict(meta, species)
            assert deliver(ingest, meta, device).rejected is None
            for chunk in chunks_of(meta, files[0]):
                assert deliver(ingest, chunk, device, "media").rejected is None
            (foxes if species else blanks).append(meta.event.event_id)
    finally:
        ingest.close()
    assert not (root / "ingest.sqlite").exists()  # every row went to the server
    # Camtrap DP needs coordinates; `export locate` records them in the same store.
    for deployment, latitude in [("dep-1", 51.5), ("dep-2", 51.6)]:
        located = _run(
            "export", "locate", deployment, "--root", root, "--db", postgres_db,
            "--latitude", latitude, "--longitude", "-0.1",
        )  # fmt: skip
        assert located == 0
    return Store(root, postgres_db, foxes, blanks)


def _table(package: Path, name: str) -> list[dict[str, str]]:
    with (package / f"{name}.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _export(store: Store, out: Path) -> Path:
    assert _run("export", "camtrap-dp", out, "--root", store.root, "--db", store.url) == 0
    assert validate_package(out / "datapackage.json").valid
    return out


def test_the_camtrap_dp_export_reads_every_row_and_file_from_postgres(store, tmp_path):
    package = _export(store, tmp_path / "package")
    deployments = {d["deploymentID"]: d for d in _table(package, "deployments")}
    assert set(deployments) == {"dep-1", "dep-2"}
    assert deployments["dep-2"]["latitude"] == "51.6"
    media = _table(package, "media")
    assert len(media) == 4
    assert all((package / m["filePath"]).is_file() for m in media)
    events = {o["eventID"] for o in _table(package, "observations")}
    assert events == set(store.foxes + store.blanks)


def test_the_report_counts_what_postgres_holds(store, tmp_path, capsys):
    assert _run("report", "--root", store.root, "--db", store.url, "--out", tmp_path / "r") == 0
    summary = (tmp_path / "r" / "summary.txt").read_text(encoding="utf-8")
    assert "devices: 2; events: 4; media: 4" in summary
    assert re.search(r"red fox\s+3\b", summary), summary


def test_the_handoff_source_takes_reviewed_labels_from_postgres(store):
    assert stub_records(store.root, url=store.url) == []  # nobody reviewed anything yet
    records = stub_records(store.root, include_machine=True, url=store.url)
    assert sorted(r.category for r in records) == ["Vulpes vulpes"] * 3 + ["blank"]
    assert all(Path(r.source).is_file() for r in records)


def _login(app, username: str):
    client = app.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
    password = PASSWORDS[username][1]
    answer = client.post(
        "/login", data={"username": username, "password": password, "csrf_token": token}
    )
    assert answer.status_code == 302, answer.text
    return client


def _shown(client, query: str = "") -> set[str]:
    page = client.get(f"/captures?{query}")
    assert page.status_code == 200, page.text
    return set(re.findall(r'data-event="([^"]+)"', page.text))


def test_the_review_page_lists_filters_shows_and_stores_reviews_on_postgres(store, tmp_path):
    add_users(store.root)
    app = create_app(ReviewConfig(store.root, secure_cookies=False, db_url=store.url))
    client = _login(app, "rita")
    assert _shown(client) == set(store.foxes + store.blanks)
    assert _shown(client, "type=blank") == set(store.blanks)
    assert _shown(client, "species=Vulpes+vulpes&device=trap-02") == {store.foxes[2]}
    assert _shown(client, "reviewed=yes") == set()
    assert client.get("/fleet").status_code == 200

    reviewed = store.foxes[0]
    page = client.get(f"/events/{reviewed}")
    assert page.status_code == 200 and "red fox" in page.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    saved = client.post(f"/events/{reviewed}/review", data={"action": "human", "csrf_token": token})
    assert saved.status_code == 302, saved.text
    assert _shown(client, "reviewed=yes") == {reviewed}

    # The review is a row on the server, and the export prefers it to the machine's label.
    db = open_store_db(store.root, url=store.url)
    try:
        rows = db.execute(
            "SELECT classified_by, observation_type FROM observations "
            "WHERE event_id = ? AND classification_method = 'human'",
            (reviewed,),
        ).fetchall()
    finally:
        db.close()
    assert [tuple(r) for r in rows] == [("rita", "human")]
    package = _export(store, tmp_path / "package")
    said = [o for o in _table(package, "observations") if o["eventID"] == reviewed]
    assert [(o["classificationMethod"], o["observationType"]) for o in said] == [("human", "human")]
    assert [r.category for r in stub_records(store.root, url=store.url)] == ["human"]
    labelled = ingest_images(store.root, url=store.url)
    assert [(i.event, i.cls.name) for i in labelled.images] == [(reviewed, "human")]


READERS = [
    ("export", "camtrap-dp", "{out}", "--root", "{root}"),
    ("export", "locate", "dep-1", "--root", "{root}", "--latitude", "1", "--longitude", "1"),
    ("report", "--root", "{root}", "--out", "{out}"),
    ("handoff", "--ingest-root", "{root}", "--out", "{out}", "--dry-run"),
    ("serve", "--root", "{root}", "--insecure-http", "--port", "0"),
    ("model", "status", "--root", "{root}"),
]


def _argv(template: tuple[str, ...], tmp_path: Path, url: str) -> list[str]:
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    values = {"root": str(root), "out": str(tmp_path / "out")}
    return [part.format(**values) for part in template] + ["--db", url]


@pytest.mark.parametrize("template", READERS, ids=lambda t: " ".join(t[:2]))
def test_a_server_that_is_down_is_named_in_one_line(template, tmp_path, capsys):
    port = reserve_port()  # reserved, never listened on: the connection is refused
    url = f"postgresql://camtrap@127.0.0.1:{port}/camtrap"
    assert cloud_main(_argv(template, tmp_path, url)) == Exit.UNAVAILABLE
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert f"127.0.0.1:{port}" in err and "Traceback" not in err


@pytest.mark.parametrize("template", READERS, ids=lambda t: " ".join(t[:2]))
def test_a_database_without_ingest_tables_is_no_ingest_store(
    template, tmp_path, capsys, postgres_server
):
    url = postgres_server.new_database(f"empty_{uuid.uuid4().hex[:8]}")
    assert cloud_main(_argv(template, tmp_path, url)) == Exit.NO_INPUT
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "no ingest store" in err and "Traceback" not in err
