"""Retention under the default policy (``defer``): what goes first when the card needs room.

Deferred blanks are the first frames to go among those the cloud does not have, most
confidently blank first, and only as many as the limit needs; files the cloud already holds
may go before them (nothing is lost); low-confidence media come after; a confident animal
never. Real stores in temp dirs, real JPEGs, a real small quota, and a real small file system
(a tmpfs) for the free-space reserve.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from device.config import Settings
from device.store.media import Media
from device.store.outbox import Outbox
from device.store.retention import Eviction, Retention
from device.store.store import MediaStore
from device.store.verdicts import Verdict
from device.store.vocabulary import ItemKind, MediaState, item_id_for
from device.vision.engine import ObservationRow
from tests.support.trap_db import T0, Burst, noise_jpeg, open_store, queue_captures
from tests.support.world import trap_settings

pytestmark = pytest.mark.timeout(60)


def judge(store: MediaStore, burst: Burst, kind: str, score: float) -> None:
    """The vision worker's part: a thumbnail per frame and the verdict. ``score`` is the
    blank score of a blank event, the top probability of an animal one."""
    todo = store.event_to_classify(burst.event_id)
    assert todo is not None
    thumbs = {f.media_id: store.write_thumbnail(f, noise_jpeg(64, 48, f.seq)) for f in todo.media}
    blank = kind == "blank"
    row = ObservationRow(
        media_id=None,
        observation_type=kind,
        scientific_name=None if blank else "Vulpes vulpes",
        common_name=None if blank else "red fox",
        taxon_level=None if blank else "species",
        taxonomy=None,
        count=None,
        classification_probability=score,
        blank_score=score if blank else 1 - score,
        classified_by="test-model@1",
        details=None,
    )
    verdict = Verdict(
        burst.event_id,
        [row],
        blank,
        row.blank_score,
        thumbs,
        T0 + timedelta(hours=1),
    )
    assert store.record_verdict(verdict) == [], "the default policy deletes nothing"


class Card:
    """A trap's store and its retention, with the quota the test tightens."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = open_store(settings)

    def retention(self) -> Retention:
        retention = Retention(self.settings, lambda: self.store.db)
        retention.resync()
        return retention

    def kept_bytes(self) -> int:
        return Media(self.store.db).kept_bytes()

    def evict_with_quota(self, quota: int) -> list[Eviction]:
        self.settings.storage.media_quota_bytes = quota
        return self.retention().enforce().evicted

    def row(self, media_id: str):  # type: ignore[no-untyped-def]
        frame = Media(self.store.db).get(media_id)
        assert frame is not None
        return frame


def test_deferred_blanks_go_first_most_confident_first_and_a_sure_animal_never(tmp_path):
    card = Card(trap_settings(tmp_path, storage={"min_free_bytes": 0}))
    # Capture order (oldest first) is chosen so that "oldest first" would pick another frame
    # than "most confidently blank first" at every step.
    uploaded, unsure, low, high_old, high_new, fox = queue_captures(
        card.store, 6, frames=1, size=(320, 240)
    )
    judge(card.store, uploaded, "animal", 0.95)
    judge(card.store, unsure, "animal", 0.30)  # below storage.evict_below_confidence
    judge(card.store, low, "blank", 0.90)
    judge(card.store, high_old, "blank", 0.99)
    judge(card.store, high_new, "blank", 0.99)
    judge(card.store, fox, "animal", 0.97)
    [up] = uploaded.media_ids
    Outbox(card.store.db).complete(
        [item_id_for(ItemKind.MEDIA, up), item_id_for(ItemKind.THUMBNAIL, up)]
    )
    assert Media(card.store.db).deferred_blanks().frames == 3
    assert card.evict_with_quota(card.kept_bytes()) == [], "at the quota nothing needs room"

    def next_eviction() -> tuple[str, bool, str]:
        """Ask for one byte: exactly one file goes, the first in retention's order."""
        [gone] = card.evict_with_quota(card.kept_bytes() - 1)
        return gone.media_id, gone.thumbnail, gone.reason

    order = [next_eviction() for _ in range(9)]
    assert order == [
        (up, False, "retention: uploaded media"),  # the cloud has it: nothing is lost
        (up, True, "retention: uploaded thumbnail"),
        (high_old.media_ids[0], False, "retention: deferred blank"),  # 0.99, older
        (high_new.media_ids[0], False, "retention: deferred blank"),  # 0.99, newer
        (low.media_ids[0], False, "retention: deferred blank"),  # 0.90
        (low.media_ids[0], True, "retention: blank thumbnail"),  # then their thumbnails
        (high_old.media_ids[0], True, "retention: blank thumbnail"),
        (high_new.media_ids[0], True, "retention: blank thumbnail"),
        (unsure.media_ids[0], False, "retention: low-confidence media"),
    ]
    card.settings.storage.media_quota_bytes = 1
    left = card.retention()
    report = left.enforce()
    assert report.evicted == [], "what is left is a sure animal and non-blank thumbnails"
    assert report.over and left.disk_full, "nothing evictable is left: reported"
    assert card.row(fox.media_ids[0]).state is MediaState.STORED, "a sure animal is never evicted"

    for burst in (low, high_old, high_new):
        frame = card.row(burst.media_ids[0])
        assert (frame.state, frame.error) == (MediaState.EVICTED, "retention: deferred blank")
        assert frame.path is not None and not (card.store.data_dir / frame.path).exists()
    with card.store.db.read() as conn:
        assert conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 6
        assert conn.execute("SELECT COUNT(*) FROM observations").fetchone()[0] == 6
        dead = dict(conn.execute("SELECT item_id, last_error FROM outbox WHERE state = 'dead'"))
        metadata = dict(conn.execute("SELECT item_id, state FROM outbox WHERE kind = 'metadata'"))
    assert dead[item_id_for(ItemKind.MEDIA, low.media_ids[0])] == "retention: deferred blank"
    assert set(metadata.values()) == {"pending"}, "every event's metadata is still owed"
    assert Media(card.store.db).deferred_blanks().frames == 0
    card.store.close()


def test_a_deferred_blank_is_evicted_only_as_far_as_the_quota_needs(tmp_path):
    card = Card(trap_settings(tmp_path, storage={"min_free_bytes": 0}))
    bursts = queue_captures(card.store, 4, frames=2, size=(320, 240))
    for n, burst in enumerate(bursts):
        judge(card.store, burst, "blank", 0.91 + n / 50)  # the newest is the surest blank
    sizes = {f.media_id: f.size for b in bursts for f in Media(card.store.db).for_event(b.event_id)}
    surest = bursts[-1].media_ids
    need = sizes[surest[0]] + 1  # more than one frame, less than two
    gone = card.evict_with_quota(card.kept_bytes() - need)
    assert sorted(e.media_id for e in gone) == sorted(surest), "one event, no more"
    assert Media(card.store.db).deferred_blanks().frames == 6
    card.store.close()


# -- the free-space reserve, on a small real file system -----------------------------------------


@pytest.fixture
def small_card(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs: a card that really fills. Mounting needs root (CAP_SYS_ADMIN)."""
    mount = shutil.which("mount")
    if os.geteuid() != 0 or mount is None:
        pytest.skip("mounting a small tmpfs needs root and mount(8)")
    point = tmp_path / "card"
    point.mkdir()
    done = subprocess.run(
        [mount, "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(point)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


def test_the_free_space_reserve_takes_deferred_blanks_first_surest_first(tmp_path, small_card):
    settings = trap_settings(
        tmp_path, storage={"data_dir": small_card / "data", "min_free_bytes": 0}
    )
    (small_card / "data").mkdir()
    card = Card(settings)
    scores = [0.93, 0.99, 0.91, 0.97, 0.95, 0.92]
    bursts = queue_captures(card.store, len(scores) + 1, frames=1, size=(320, 240))
    for burst, score in zip(bursts, scores, strict=False):
        judge(card.store, burst, "blank", score)
    fox = bursts[-1]
    judge(card.store, fox, "animal", 0.97)
    retention = card.retention()
    free = retention.free_bytes()
    assert free is not None
    frame = max(f.size or 0 for b in bursts for f in Media(card.store.db).for_event(b.event_id))
    # The reserve asks for two and a half frames more than there is.
    settings.storage.min_free_bytes = free + frame * 5 // 2
    retention = card.retention()
    report = retention.enforce()
    assert not report.over and retention.free_bytes() >= settings.storage.min_free_bytes  # type: ignore[operator]
    evicted = [e.media_id for e in report.evicted]
    by_score = [
        b.media_ids[0] for b, _ in sorted(zip(bursts, scores, strict=False), key=lambda p: -p[1])
    ]
    assert len(evicted) >= 3, "two and a half frames need three"
    assert evicted == by_score[: len(evicted)], "surest blank first"
    assert len(evicted) < len(scores), "only as many as the reserve needs"
    assert {e.reason for e in report.evicted} == {"retention: deferred blank"}
    assert card.row(fox.media_ids[0]).state is MediaState.STORED
    card.store.close()
