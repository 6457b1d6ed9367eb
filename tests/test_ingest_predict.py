"""Media that reach the ingest unclassified (a trap with vision off) are sent to the prediction
endpoint, and its answers are stored as machine observations like a trap's own."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cloud_stub.export.source import Selection, extract
from cloud_stub.ingest import prediction_queue as queue
from cloud_stub.ingest.core import Incoming, Ingestor
from cloud_stub.ingest.database import Database
from cloud_stub.ingest.opening import open_store_db, open_store_media
from cloud_stub.ingest.predict_client import PredictClient, token_from_file
from cloud_stub.ingest.predictor import Backoff, Predictor, PredictorThread
from cloud_stub.predict.engine import PredictEngine
from cloud_stub.predict.server import Limits, PredictServer
from cloud_stub.review.captures import event_detail
from device import protocol
from device.contracts.errors import UserError
from device.contracts.pack import DEFAULT_PACK_DIR
from device.protocol import CaptureMeta, Observation
from tests.support.messages import capture
from tests.support.ports import reserve_port
from tests.support.uplink import wait_until
from tests.support.world import jpeg_bytes

pytestmark = [
    pytest.mark.skipif(
        not (DEFAULT_PACK_DIR / "manifest.json").exists(), reason="default pack not built"
    ),
    pytest.mark.timeout(120),
]

DEVICE = "trap-07"
CHELSEA = (DEFAULT_PACK_DIR / "golden" / "chelsea.jpg").read_bytes()
CAT_KEY = "mammalia;carnivora;felidae;felis;catus"
MODEL = "efficientnet-lite0-imagenet@1.0.0"
TOKEN = "a-token-for-these-tests-only-42"
PATH = "/v1/projects/ngo/locations/field/endpoints/traps:predict"


class Clock:
    """The predictor's time, stepped by the test (it starts just after ingest queued)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC) + timedelta(seconds=1)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(scope="module")
def engine() -> Iterator[PredictEngine]:
    loaded = PredictEngine(DEFAULT_PACK_DIR)
    yield loaded
    loaded.close()


def serve(engine: PredictEngine, port: int, token: str | None = None) -> PredictServer:
    server = PredictServer(engine, "127.0.0.1", port, token, Limits())
    server.start()
    return server


@pytest.fixture
def endpoint(engine) -> Iterator[PredictServer]:
    server = serve(engine, reserve_port())
    yield server
    server.stop()


@pytest.fixture
def ingest(tmp_path, store_url) -> Iterator[Ingestor]:
    ingestor = Ingestor(tmp_path / "cloud", max_message_bytes=1024 * 1024, db_url=store_url)
    yield ingestor
    ingestor.close()


@pytest.fixture
def predictor_db(ingest, store_url) -> Iterator[Database]:
    """The predictor's own connection, as in ``camtrap-cloud ingest``."""
    db = open_store_db(ingest.store.root, write=True, url=store_url)
    yield db
    db.close()


def predictor(ingest: Ingestor, db: Database, port: int, clock: Clock, **kw) -> Predictor:
    client = PredictClient(f"http://127.0.0.1:{port}{PATH}", kw.pop("token", None), timeout_s=30)
    media = open_store_media(db, ingest.store.root)
    return Predictor(db, media, client, clock=clock, backoff=Backoff(5, 60), **kw)


def send(ingest: Ingestor, message) -> None:
    payload = protocol.encode(message)
    subtopic = protocol.UP_SUFFIX_OF[message.type]
    outcome = ingest.handle(Incoming(f"camtrap/{DEVICE}/up/{subtopic}", DEVICE, subtopic, payload))
    assert outcome.rejected is None, outcome.rejected


def send_file(ingest: Ingestor, media_id: str, data: bytes, kind: str = "full") -> None:
    for chunk in protocol.split_media(
        data,
        max_payload_bytes=8192,
        device_id=DEVICE,
        item_id=f"{kind}:{media_id}",
        media_id=media_id,
        kind=kind,
    ):
        send(ingest, chunk)


def deliver_capture(
    ingest: Ingestor, files: list[bytes], *, vision: bool = False, full: bool = True
) -> CaptureMeta:
    """A burst as a trap uploads it: metadata (no observations when vision is off), then each
    frame's full file in chunks."""
    meta, _ = capture(DEVICE, full_files=files)
    if not vision:
        meta = meta.model_copy(update={"observations": []})
    send(ingest, meta)
    for media, data in zip(meta.media, files, strict=True):
        if full:
            send_file(ingest, media.media_id, data)
    return meta


def machine_rows(db: Database, event_id: str) -> list[dict]:
    return [
        dict(r)
        for r in db.execute(
            "SELECT * FROM observations WHERE event_id = ? AND classification_method = 'machine' "
            "ORDER BY observation_level, media_id",
            (event_id,),
        )
    ]


def queue_row(db: Database, media_id: str) -> dict:
    row = db.execute("SELECT * FROM prediction_queue WHERE media_id = ?", (media_id,)).fetchone()
    return dict(row)


def test_a_vision_off_capture_gets_the_endpoints_verdict_as_machine_observations(
    ingest, predictor_db, endpoint
):
    meta = deliver_capture(ingest, [CHELSEA, jpeg_bytes(320, 240, seed=3)])
    cat, noise = (m.media_id for m in meta.media)
    assert queue.queue_counts(predictor_db) == {"queued": 2}

    done = predictor(ingest, predictor_db, endpoint.port, Clock()).run_once()

    assert (done.answered, done.failed, done.deferred) == (2, 0, 0)
    assert queue.queue_counts(predictor_db) == {"done": 2}
    rows = machine_rows(predictor_db, meta.event.event_id)
    event_rows = [r for r in rows if r["observation_level"] == "event"]
    frames = {r["media_id"]: r for r in rows if r["observation_level"] == "media"}
    assert len(event_rows) == 1 and set(frames) == {cat, noise}
    assert {r["classified_by"] for r in rows} == {MODEL}
    assert frames[cat]["observation_type"] == "animal"
    assert frames[cat]["taxonomy"] == CAT_KEY and frames[cat]["scientific_name"]
    assert 0 < frames[cat]["classification_probability"] <= 1
    assert frames[cat]["blank_score"] is not None
    [event] = event_rows
    # The event speaks with its best frame's voice, as the trap's own event row does.
    assert event["media_id"] is None and json.loads(event["details"])["from_media"] == cat
    assert (event["observation_type"], event["taxonomy"]) == ("animal", CAT_KEY)
    assert event["event_start"] == meta.event.event_start.isoformat()


def test_the_review_page_and_the_export_show_the_answer_like_a_trap_verdict(
    ingest, predictor_db, endpoint, store_url
):
    meta = deliver_capture(ingest, [CHELSEA])
    predictor(ingest, predictor_db, endpoint.port, Clock()).run_once()

    detail = event_detail(predictor_db, meta.event.event_id)
    assert detail is not None and detail["machine"]["taxonomy"] == CAT_KEY
    assert detail["machine"]["classified_by"] == MODEL
    assert set(detail["frames"]) == {meta.media[0].media_id}

    predictor_db.begin()
    predictor_db.execute("UPDATE deployments SET latitude = 51.5, longitude = -0.1")
    predictor_db.commit()
    out = extract(ingest.store.root, Selection(db_url=store_url))
    levels = {o["observationLevel"]: o for o in out.observations}
    assert set(levels) == {"event", "media"}
    assert {o["classificationMethod"] for o in out.observations} == {"machine"}
    assert levels["media"]["mediaID"] == meta.media[0].media_id
    assert levels["event"]["classifiedBy"] == MODEL


def test_a_capture_the_trap_classified_itself_is_not_sent(ingest, predictor_db, endpoint):
    meta = deliver_capture(ingest, [CHELSEA], vision=True)

    assert queue.queue_counts(predictor_db) == {}
    assert predictor(ingest, predictor_db, endpoint.port, Clock()).run_once().handled == 0
    assert [r["classified_by"] for r in machine_rows(predictor_db, meta.event.event_id)] == [
        "efficientnet-lite0@1"
    ]


def test_a_trap_unclassified_row_is_replaced_by_the_endpoints_verdict(
    ingest, predictor_db, endpoint
):
    meta, files = capture(DEVICE, full_files=[CHELSEA])
    ev = meta.event
    unclassified = Observation(
        observation_id="trap-unclassified-1",
        deployment_id=ev.deployment_id,
        event_id=ev.event_id,
        event_start=ev.event_start,
        event_end=ev.event_end or ev.event_start,
        observation_level="event",
        observation_type="unclassified",
        classified_by="",
        details={"reason": "no model pack is serving"},
    )
    meta = meta.model_copy(update={"observations": [unclassified]})
    send(ingest, meta)
    send_file(ingest, meta.media[0].media_id, files[0])

    predictor(ingest, predictor_db, endpoint.port, Clock()).run_once()

    events = [
        r for r in machine_rows(predictor_db, ev.event_id) if r["observation_level"] == "event"
    ]
    assert [r["observation_type"] for r in events] == ["animal"]
    replaced = json.loads(events[0]["details"])["replaces"]
    assert replaced[0]["observation_id"] == "trap-unclassified-1"
    assert replaced[0]["details"] == {"reason": "no model pack is serving"}


def test_while_the_endpoint_is_down_media_stay_queued_and_are_answered_once_it_is_up(
    ingest, predictor_db, engine
):
    port = reserve_port()  # nothing listens here yet
    clock = Clock()
    meta = deliver_capture(ingest, [CHELSEA])
    media_id = meta.media[0].media_id
    worker = predictor(ingest, predictor_db, port, clock)

    assert worker.run_once().deferred == 1
    row = queue_row(predictor_db, media_id)
    assert (row["state"], row["attempts"]) == ("queued", 1)
    assert f"127.0.0.1:{port}" in row["last_error"] and "refused" in row["last_error"]
    clock.advance(4)
    assert worker.run_once().handled == 0  # backing off: 5 s after the first failure
    clock.advance(1)
    assert worker.run_once().deferred == 1
    assert queue_row(predictor_db, media_id)["attempts"] == 2
    clock.advance(9)
    assert worker.run_once().handled == 0  # the second wait is twice as long

    server = serve(engine, port)
    try:
        clock.advance(1)
        assert worker.run_once().answered == 1
    finally:
        server.stop()
    row = queue_row(predictor_db, media_id)
    assert (row["state"], row["attempts"], row["last_error"]) == ("done", 3, None)
    assert len(machine_rows(predictor_db, meta.event.event_id)) == 2


def test_a_corrupt_image_fails_with_its_reason_and_the_others_are_answered(
    ingest, predictor_db, endpoint
):
    corrupt = CHELSEA[: len(CHELSEA) // 4]  # a JPEG's start, cut short
    meta = deliver_capture(ingest, [corrupt, CHELSEA])
    broken, good = (m.media_id for m in meta.media)
    worker = predictor(ingest, predictor_db, endpoint.port, Clock())

    done = worker.run_once()

    assert (done.answered, done.failed) == (1, 1)
    failed = queue_row(predictor_db, broken)
    assert failed["state"] == "failed" and "cannot decode" in failed["last_error"]
    assert queue_row(predictor_db, good)["state"] == "done"
    frames = [r["media_id"] for r in machine_rows(predictor_db, meta.event.event_id)]
    assert broken not in frames and good in frames
    assert worker.run_once().handled == 0  # a refused image is not sent again


def test_an_endpoint_that_requires_a_token_answers_when_it_is_given(
    ingest, predictor_db, engine, tmp_path
):
    server = serve(engine, reserve_port(), TOKEN)
    token_file = tmp_path / "predict.token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    clock = Clock()
    meta = deliver_capture(ingest, [CHELSEA])
    media_id = meta.media[0].media_id
    try:
        assert predictor(ingest, predictor_db, server.port, clock).run_once().deferred == 1
        assert "token refused" in queue_row(predictor_db, media_id)["last_error"]
        clock.advance(5)
        with_token = predictor(
            ingest, predictor_db, server.port, clock, token=token_from_file(token_file)
        )
        assert with_token.run_once().answered == 1
    finally:
        server.stop()


def test_a_token_file_others_can_read_is_refused_naming_the_option(tmp_path):
    token_file = tmp_path / "predict.token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o644)
    with pytest.raises(UserError) as refused:
        token_from_file(token_file)
    assert refused.value.message.startswith(f"--predict-token-file {token_file}: must be mode")


def test_two_predictors_share_one_queue_and_each_media_is_answered_once(
    ingest, predictor_db, endpoint, store_url
):
    metas = [deliver_capture(ingest, [CHELSEA, jpeg_bytes(96, 96, seed=i)]) for i in range(3)]
    other_db = open_store_db(ingest.store.root, write=True, url=store_url)
    try:
        clock = Clock()
        first = predictor(ingest, predictor_db, endpoint.port, clock, batch=2)
        second = predictor(ingest, other_db, endpoint.port, clock, batch=2)
        answered = 0
        while True:
            handled = first.run_once().answered + second.run_once().answered
            if handled == 0:
                break
            answered += handled
    finally:
        other_db.close()
    assert answered == 6
    for meta in metas:
        rows = machine_rows(predictor_db, meta.event.event_id)
        assert sorted(r["observation_level"] for r in rows) == ["event", "media", "media"]


def test_an_answer_from_a_claim_whose_lease_ran_out_is_not_stored(ingest, predictor_db, endpoint):
    meta = deliver_capture(ingest, [CHELSEA])
    clock = Clock()
    [stale] = queue.claim(predictor_db, clock(), 60, 10)
    clock.advance(61)  # the first worker hung; another takes the item over
    predictor(ingest, predictor_db, endpoint.port, clock).run_once()
    verdict = queue.MachineVerdict("blank", None, None, None, None, 0.9, 0.9, "late@1", {})

    assert queue.record_answer(predictor_db, stale, verdict, clock()) is False
    assert {r["classified_by"] for r in machine_rows(predictor_db, meta.event.event_id)} == {MODEL}


def test_ingest_refuses_predict_options_without_a_url_in_one_line(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "cloud_stub.cli", "ingest", "--root", str(tmp_path / "c"),
         "--pubsub-subscription", "projects/p/subscriptions/s",
         "--predict-token-file", str(tmp_path / "t")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2
    assert run.stderr.strip() == (
        "camtrap-cloud: --predict-token-file and --predict-country need --predict-url"
    )


def test_ingest_refuses_a_predict_url_that_is_not_an_endpoint(tmp_path: Path):
    run = subprocess.run(
        [sys.executable, "-m", "cloud_stub.cli", "ingest", "--root", str(tmp_path / "c"),
         "--pubsub-subscription", "projects/p/subscriptions/s",
         "--predict-url", "http://127.0.0.1:1/v1/models"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2 and "must end with the endpoint's ':predict'" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_a_thumbnail_waits_for_its_full_file_which_is_sent_instead(ingest, predictor_db, endpoint):
    meta = deliver_capture(ingest, [CHELSEA], full=False)
    media_id = meta.media[0].media_id
    send_file(ingest, media_id, jpeg_bytes(160, 120, seed=9), kind="thumbnail")
    clock = Clock()
    worker = predictor(ingest, predictor_db, endpoint.port, clock)
    assert queue_row(predictor_db, media_id)["state"] == "queued"
    assert worker.run_once().handled == 0  # the full file may still be on its way

    send_file(ingest, media_id, CHELSEA)
    clock.advance(1)

    assert worker.run_once().answered == 1
    [frame] = [r for r in machine_rows(predictor_db, meta.event.event_id) if r["media_id"]]
    assert json.loads(frame["details"])["sent"] == "full" and frame["taxonomy"] == CAT_KEY


def test_a_thumbnail_alone_is_sent_once_its_grace_is_over(ingest, predictor_db, endpoint):
    meta = deliver_capture(ingest, [CHELSEA], full=False)
    media_id = meta.media[0].media_id
    send_file(ingest, media_id, CHELSEA, kind="thumbnail")
    clock = Clock()
    clock.advance(queue.THUMBNAIL_GRACE_S)

    assert predictor(ingest, predictor_db, endpoint.port, clock).run_once().answered == 1
    [frame] = [r for r in machine_rows(predictor_db, meta.event.event_id) if r["media_id"]]
    assert json.loads(frame["details"])["sent"] == "thumbnail"


def test_the_ingest_predictor_thread_answers_what_ingest_queues(ingest, endpoint, store_url):
    client = PredictClient(f"http://127.0.0.1:{endpoint.port}{PATH}")
    thread = PredictorThread(ingest.store.root, store_url, client).start()
    try:
        meta = deliver_capture(ingest, [CHELSEA, CHELSEA])
        db = ingest.store.db
        assert wait_until(lambda: queue.queue_counts(db) == {"done": 2}, timeout=60)
    finally:
        thread.stop()
    assert len(machine_rows(ingest.store.db, meta.event.event_id)) == 3
