"""The predictor: sends the queued unclassified media to the endpoint and stores its answers.

One ``Predictor`` per ingest worker, on its own thread and its own database connection; any
number share one queue (prediction_queue.py says how). A round claims up to ``batch`` due
items, sends their images in one request, and settles each: answered (machine observations),
refused by the endpoint for that image (``failed``, with the reason, never sent again), or
the endpoint unavailable (still ``queued``, with its attempt count and last error, due again
after a backoff that doubles per attempt up to ``MAX_BACKOFF_S``). The clock and the wait
between rounds are injectable, so tests step through time instead of sleeping.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cloud_stub.ingest import prediction_queue as queue
from cloud_stub.ingest.database import Database
from cloud_stub.ingest.opening import is_transient, open_store_db, open_store_media
from cloud_stub.ingest.predict_client import (
    EndpointUnavailable,
    PredictClient,
    Refused,
    TooLarge,
    check_predict_url,
    token_from_file,
)
from cloud_stub.ingest.schema import migrate
from cloud_stub.media import MediaMissing, MediaStorage, MediaUnavailable
from device.contracts.errors import UserError

__all__ = ["Backoff", "Predictor", "PredictorThread", "Round", "predictor_from_args"]

log = logging.getLogger("camtrap-cloud.predictor")

FIRST_BACKOFF_S = 5.0
MAX_BACKOFF_S = 600.0
LEASE_S = 300.0  # longer than any request may take (the client's timeout is 60 s)
IDLE_WAIT_S = 2.0
BATCH = 4


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Backoff:
    first_s: float = FIRST_BACKOFF_S
    most_s: float = MAX_BACKOFF_S

    def after(self, attempts: int) -> float:
        return float(min(self.most_s, self.first_s * 2 ** max(0, attempts - 1)))


@dataclass
class Round:
    answered: int = 0
    failed: int = 0
    deferred: int = 0

    @property
    def handled(self) -> int:
        return self.answered + self.failed + self.deferred


class Predictor:
    def __init__(
        self,
        db: Database,
        media: MediaStorage,
        client: PredictClient,
        *,
        clock: Callable[[], datetime] = utc_now,
        batch: int = BATCH,
        lease_s: float = LEASE_S,
        backoff: Backoff | None = None,
        reconnect: Callable[[], Database] | None = None,
    ) -> None:
        self.db = db
        self.media = media
        self.client = client
        self.clock = clock
        self.batch = batch
        self.lease_s = lease_s
        self.backoff = backoff or Backoff()
        self._reconnect = reconnect

    def run_once(self) -> Round:
        """One round: claim, send, settle. Database errors propagate (``run`` handles them)."""
        done = Round()
        items = queue.claim(self.db, self.clock(), self.lease_s, self.batch)
        if not items:
            return done
        images: list[tuple[queue.Claimed, bytes]] = []
        for item in items:
            try:
                with self.media.open(item.relative) as handle:
                    images.append((item, handle.read()))
            except MediaMissing as exc:
                self._fail(item, f"{item.relative}: file missing ({exc})", done)
            except (MediaUnavailable, OSError) as exc:
                self._defer(item, f"{item.relative}: cannot read ({exc})", done)
        self._send(images, done)
        return done

    def _send(self, images: list[tuple[queue.Claimed, bytes]], done: Round) -> None:
        if not images:
            return
        try:
            answer = self.client.predict([data for _, data in images])
        except TooLarge as exc:
            if len(images) > 1:  # one of them is too big for the endpoint: send them alone
                for one in images:
                    self._send([one], done)
                return
            self._fail(images[0][0], f"{images[0][0].relative}: {exc}", done)
            return
        except EndpointUnavailable as exc:
            log.warning("%s (%d item(s) stay queued)", exc, len(images))
            for item, _ in images:
                self._defer(item, str(exc), done)
            return
        now = self.clock()
        for (item, _), result in zip(images, answer.results, strict=True):
            if isinstance(result, Refused):
                self._fail(item, result.reason, done)
            else:
                details = {**result.details, "sent": item.kind, "endpoint": self.client.host}
                verdict = replace(result, details=details)
                if queue.record_answer(self.db, item, verdict, now):
                    done.answered += 1

    def _fail(self, item: queue.Claimed, reason: str, done: Round) -> None:
        log.warning("media %s not classified: %s", item.media_id, reason)
        if queue.record_failure(self.db, item, reason, self.clock()):
            done.failed += 1

    def _defer(self, item: queue.Claimed, error: str, done: Round) -> None:
        due = self.clock() + timedelta(seconds=self.backoff.after(item.attempts))
        if queue.retry_later(self.db, item, error, due):
            done.deferred += 1

    def run(self, stop: threading.Event, wait: Callable[[float], object] | None = None) -> None:
        """Rounds until ``stop`` is set; an idle or failed round waits before the next.
        Never raises: a database error is one log line, then a fresh connection."""
        pause = wait or stop.wait
        while not stop.is_set():
            try:
                busy = self.run_once().handled > 0
            except Exception as exc:
                if not is_transient(exc) and not _is_database_error(exc):
                    log.exception("predictor round failed")
                else:
                    log.warning("predictor: %s", str(exc).strip().splitlines()[0][:200])
                self._fresh_connection()
                busy = False
            if not busy:
                pause(IDLE_WAIT_S)

    def _fresh_connection(self) -> None:
        with contextlib.suppress(Exception):
            self.db.rollback()
        if self._reconnect is None:
            return
        with contextlib.suppress(Exception):
            self.db.close()
        try:
            self.db = self._reconnect()
        except Exception as exc:  # still down: the next round says so again
            log.warning("predictor cannot reconnect yet: %s", str(exc).strip()[:200])


def _is_database_error(exc: Exception) -> bool:
    module = type(exc).__module__
    return module.startswith(("sqlite3", "psycopg"))


class PredictorThread:
    """A ``Predictor`` on its own thread and connection, for ``camtrap-cloud ingest``."""

    def __init__(self, root: Path, db_url: str | None, client: PredictClient) -> None:
        self.root = root
        self.db_url = db_url
        db = self._connect()
        self.predictor = Predictor(db, open_store_media(db, root), client, reconnect=self._connect)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="predictor", daemon=True)

    def _connect(self) -> Database:
        db = open_store_db(self.root, write=True, url=self.db_url)
        if db.dialect == "sqlite":
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
        migrate(db)  # the ingest has already; cheap when nothing is missing
        return db

    def start(self) -> PredictorThread:
        self._thread.start()
        log.info("sending unclassified media to %s", self.predictor.client.host)
        return self

    def _run(self) -> None:
        self.predictor.run(self._stop)

    def stop(self, timeout: float = 70.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        with contextlib.suppress(Exception):
            self.predictor.db.close()


def predictor_from_args(args: argparse.Namespace) -> PredictClient | None:
    """The client ``--predict-url``, ``--predict-token-file``, ``--predict-country`` ask for
    (checked now: ``UserError`` is one line and exit 2 or 66), or None without a URL."""
    url = getattr(args, "predict_url", None)
    token_file = getattr(args, "predict_token_file", None)
    country = getattr(args, "predict_country", None)
    if url is None:
        if token_file is not None or country is not None:
            raise UserError("--predict-token-file and --predict-country need --predict-url")
        return None
    token = None if token_file is None else token_from_file(Path(token_file))
    if country is not None and not (len(country) == 3 and country.isalpha()):
        raise UserError(f"--predict-country {country}: an ISO 3166-1 alpha-3 code, e.g. KEN")
    return PredictClient(
        check_predict_url(url), token, country=None if country is None else country.upper()
    )
