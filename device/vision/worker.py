"""The classification worker: the door from the store to vision and back.

It runs on its own thread, after capture and storage, so inference never delays a trigger.
For each closed event it classifies the stored frames, writes the observations, makes
thumbnails, applies the blank-media policy and reorders the event's uploads. Events closed
but not yet classified when the agent stopped are picked up again on start.

A blank event is never deleted: its metadata row (observationType ``blank``) always stays;
``vision.blank_media_policy`` decides whether its frames are kept (``keep``), reduced to a
thumbnail (``thumbnail``, the default) or removed (``delete``).
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from device.clock import local_now
from device.store import files
from device.store.outbox import PRIORITY, Outbox, item_id_for
from device.store.thumbs import make_thumbnail
from device.vision.engine import EventFrame, EventVerdict, ObservationRow

if TYPE_CHECKING:
    from device.config import Settings
    from device.store.store import MediaStore
    from device.vision.engine import VisionEngine

log = logging.getLogger("camtrap.vision")

LORES_KEPT = 64  # frames; a burst's analysis planes wait here until its event is classified
_STOP = "__stop__"


@dataclass
class VisionStats:
    events: int = 0
    animals: int = 0
    blanks: int = 0
    humans: int = 0
    vehicles: int = 0
    unclassified: int = 0
    errors: int = 0


class ClassificationWorker(threading.Thread):
    def __init__(self, settings: Settings, store: MediaStore, engine: VisionEngine | None) -> None:
        super().__init__(name="vision", daemon=True)
        self.settings = settings
        self.store = store
        self._engine = engine
        self._engine_lock = threading.Lock()
        self.queue: queue.Queue[str] = queue.Queue()
        self.stats = VisionStats()
        self._lores: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lores_lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()

    # -- the serving engine ----------------------------------------------------------------------

    def serve(self, engine: VisionEngine | None) -> None:
        """The one way to change the serving engine (start-up load, OTA swap, rollback)."""
        with self._engine_lock:
            self._engine = engine

    @property
    def engine(self) -> VisionEngine | None:
        with self._engine_lock:
            return self._engine

    @engine.setter
    def engine(self, engine: VisionEngine | None) -> None:
        # TODO(issue 13): remove once every caller uses serve().
        self.serve(engine)

    # -- fed by other threads ------------------------------------------------------------------

    def remember_lores(self, media_id: str, lores: np.ndarray | None) -> None:
        if lores is None:
            return
        with self._lores_lock:
            self._lores[media_id] = lores
            while len(self._lores) > LORES_KEPT:
                self._lores.popitem(last=False)

    def submit(self, event_id: str) -> None:
        self._idle.clear()
        self.queue.put(event_id)

    def catch_up(self) -> int:
        """Queue every event that was closed but never classified (e.g. before a crash)."""
        db = self.store.db
        if db is None:
            return 0
        with db.read() as conn:
            rows = conn.execute(
                "SELECT event_id FROM events WHERE state='closed' ORDER BY created_seq"
            ).fetchall()
        for row in rows:
            self.submit(row["event_id"])
        return len(rows)

    def wait_idle(self, timeout: float) -> bool:
        return self._idle.wait(timeout)

    def stop(self, timeout: float | None = None) -> None:
        self.queue.put(_STOP)
        self.join(timeout)

    # -- the thread -------------------------------------------------------------------------------

    def run(self) -> None:
        while True:
            event_id = self.queue.get()
            if event_id == _STOP:
                return
            try:
                self._handle(event_id)
            except (OSError, sqlite3.Error) as exc:
                # Storage trouble: the event stays 'closed' and catch_up retries it later.
                self.stats.errors += 1
                log.error("classifying event %s failed: %s", event_id, exc)
            except Exception:  # a bug in one event must not stop classification
                self.stats.errors += 1
                log.exception("classifying event %s failed", event_id)
            if self.queue.empty():
                self._idle.set()

    def _handle(self, event_id: str) -> None:
        db = self.store.db
        if db is None:
            return
        with db.read() as conn:
            event = conn.execute(
                "SELECT state, capture_method, trigger_source FROM events WHERE event_id=?",
                (event_id,),
            ).fetchone()
            media = conn.execute(
                "SELECT media_id, path, state FROM media WHERE event_id=? ORDER BY seq",
                (event_id,),
            ).fetchall()
        if event is None or event["state"] != "closed":
            return
        frames = [
            EventFrame(
                media_id=m["media_id"],
                jpeg_path=(self.store.data_dir / m["path"]) if m["state"] == "stored" else None,
                lores=self._take_lores(m["media_id"]),
            )
            for m in media
        ]
        thumbs = self._thumbnails(media)
        verdict = None if self.engine is None else self.engine.classify_event(frames)
        if verdict is not None and self._shows_empty_scene(verdict, event["capture_method"]):
            for frame in frames:
                if frame.lores is not None:
                    self.engine.learn_background(frame.lores)  # type: ignore[union-attr]
        # A test capture was asked for by a person: its frames are kept whatever they show.
        keep_all = event["trigger_source"] == "test"
        removed = self._record(event_id, media, verdict, thumbs, keep_all)
        for path in removed:
            path.unlink(missing_ok=True)
        self._count(verdict)

    def _take_lores(self, media_id: str) -> np.ndarray | None:
        with self._lores_lock:
            return self._lores.pop(media_id, None)

    @staticmethod
    def _shows_empty_scene(verdict: EventVerdict, capture_method: str) -> bool:
        """Blank events, and timelapse frames with nothing named in them, teach the
        background model what the empty scene looks like."""
        if verdict.is_blank:
            return True
        top = verdict.observations[0].observation_type
        return capture_method == "timeLapse" and top not in ("animal", "human", "vehicle")

    def _thumbnails(self, media: list[sqlite3.Row]) -> dict[str, tuple[str, str, int]]:
        """media_id -> (relative path, sha256, size) of a freshly written thumbnail."""
        made: dict[str, tuple[str, str, int]] = {}
        for m in media:
            if m["state"] != "stored" or not m["path"]:
                continue
            source = self.store.data_dir / m["path"]
            try:
                data = make_thumbnail(source)
            except Exception as exc:
                log.warning("no thumbnail for %s: %s", m["media_id"], exc)
                continue
            rel = Path(files.THUMB_DIR, *Path(m["path"]).parent.parts[1:], Path(m["path"]).name)
            directory = files.ensure_subdir(self.store.data_dir, *rel.parent.parts)
            files.atomic_write(directory, rel.name, data)
            made[m["media_id"]] = (str(rel), files.sha256_hex(data), len(data))
        return made

    def _record(
        self,
        event_id: str,
        media: list[sqlite3.Row],
        verdict: EventVerdict | None,
        thumbs: dict[str, tuple[str, str, int]],
        keep_all: bool = False,
    ) -> list[Path]:
        """One transaction: observations, thumbnails, policy, upload order. Returns the
        files to delete once it has committed (deleting first could lose a frame whose row
        still says it exists)."""
        db = self.store.db
        assert db is not None
        policy = "keep" if keep_all else self.settings.vision.blank_media_policy
        blank = verdict is not None and verdict.is_blank
        stamp = local_now(self.settings.device.timezone).isoformat()
        removed: list[Path] = []
        with db.write() as conn:
            rows = (
                verdict.observations
                if verdict is not None
                else [ObservationRow.unclassified("", {"reason": "no model pack is serving"})]
            )
            for row in rows:
                insert_observation(conn, event_id, row, stamp)
            for media_id, (path, sha, size) in thumbs.items():
                keep_thumb = not (blank and policy == "delete")
                if not keep_thumb:
                    continue
                conn.execute(
                    "UPDATE media SET thumb_path=?, thumb_sha256=?, thumb_size=? WHERE media_id=?",
                    (path, sha, size, media_id),
                )
                Outbox.enqueue(conn, "thumbnail", media_id, PRIORITY["thumbnail"], size)
            for m in media:
                if m["state"] != "stored":
                    continue
                if blank and policy in ("thumbnail", "delete"):
                    conn.execute(
                        "UPDATE media SET state='evicted', error=? WHERE media_id=?",
                        (f"blank event: blank_media_policy={policy}", m["media_id"]),
                    )
                    conn.execute(
                        "DELETE FROM outbox WHERE item_id=? AND state != 'done'",
                        (item_id_for("media", m["media_id"]),),
                    )
                    removed.append(self.store.data_dir / m["path"])
                elif blank and not keep_all:
                    conn.execute(
                        "UPDATE outbox SET priority=? WHERE item_id=? AND state='pending'",
                        (PRIORITY["blank_media"], item_id_for("media", m["media_id"])),
                    )
            if blank and policy == "delete":
                removed += [self.store.data_dir / p for p, _, _ in thumbs.values()]
            conn.execute(
                "UPDATE events SET state='classified', blank_score=? WHERE event_id=?",
                (None if verdict is None else verdict.blank_score, event_id),
            )
        return removed

    def _count(self, verdict: EventVerdict | None) -> None:
        self.stats.events += 1
        kind = "unclassified" if verdict is None else verdict.observations[0].observation_type
        if verdict is not None and verdict.is_blank:
            self.stats.blanks += 1
        elif kind == "animal":
            self.stats.animals += 1
        elif kind == "human":
            self.stats.humans += 1
        elif kind == "vehicle":
            self.stats.vehicles += 1
        else:
            self.stats.unclassified += 1


def insert_observation(
    conn: sqlite3.Connection, event_id: str, row: ObservationRow, stamp: str
) -> None:
    bbox = row.bbox or (None, None, None, None)
    conn.execute(
        "INSERT INTO observations (observation_id, event_id, media_id, observation_type,"
        " scientific_name, common_name, taxon_level, taxonomy, count,"
        " classification_probability, blank_score, classified_by, classification_method,"
        " classification_timestamp, bbox_x, bbox_y, bbox_width, bbox_height, details)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,'machine',?,?,?,?,?,?)",
        (
            str(uuid.uuid4()),
            event_id,
            row.media_id,
            row.observation_type,
            row.scientific_name,
            row.common_name,
            row.taxon_level,
            row.taxonomy,
            row.count,
            row.classification_probability,
            row.blank_score,
            row.classified_by or None,
            stamp,
            *bbox,
            json.dumps(row.details, default=str),
        ),
    )
