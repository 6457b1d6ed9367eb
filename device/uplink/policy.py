"""What may go over the link right now: the sync policy (link type and daily byte budget).

Metadata always may: it is small and it is what the cloud needs first. On a metered link
``uplink.metered_policy`` decides (metadata only by default); on Wi-Fi everything goes. Once
``uplink.daily_byte_budget`` bytes were sent today (UTC), only metadata goes until tomorrow.
The day's count lives in the store's ``kv`` table so a restart does not reset it.

Frames of blank events held by ``vision.blank_media_policy = "defer"`` (``Priority.
DEFERRED_BLANK``) never go over a metered link, whatever ``metered_policy`` says: they are
kept in case the filter was wrong, not because anyone wants to pay to send them. On Wi-Fi they
go last. ``camtrap sync --all`` (``override_all``) is a technician's decision and sends them
too.

Low battery (``device.power.shedding``, its first step) sets ``shed_blank_media``: while it
holds, no blank event's frames go over any link (``Priority.BLANK_MEDIA`` and
``DEFERRED_BLANK`` stay queued, untouched). Metadata, thumbnails (small, and the pictures a
reviewer catches a missed animal in) and the frames of every other event still go. Radio time
is the energy a draining trap has least of; a blank frame is the least worth spending it on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from device.store.db import Source
from device.store.kv import KeyValues
from device.store.vocabulary import ItemKind, Priority

ALL_KINDS = (ItemKind.METADATA, ItemKind.THUMBNAIL, ItemKind.MEDIA)
_METERED = {
    "metadata": (ItemKind.METADATA,),
    "thumbnails": (ItemKind.METADATA, ItemKind.THUMBNAIL),
    "all": ALL_KINDS,
}
KV_DAY = "uplink.budget_day"
KV_BYTES = "uplink.budget_bytes"
# The last priority a metered link may carry: everything before the deferred blanks.
METERED_MAX_PRIORITY = Priority.DEFERRED_BLANK - 1
# The last priority any link carries while low battery sheds blank media.
SHED_MAX_PRIORITY = Priority.BLANK_MEDIA - 1


@dataclass(frozen=True)
class Allowance:
    """What a claim may take on the link there is now."""

    kinds: tuple[ItemKind, ...]
    max_priority: int | None  # None: every priority class


EVERYTHING = Allowance(ALL_KINDS, None)


class SyncPolicy:
    def __init__(
        self,
        db: Source,
        metered_policy: str = "metadata",
        daily_byte_budget: int = 0,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.kv = KeyValues(db)
        self.clock = clock
        self.metered_policy = metered_policy
        self.daily_byte_budget = daily_byte_budget
        self.override_all = False  # `camtrap sync --all`: a technician decided
        self.shed_blank_media = False  # low battery: the agent's battery monitor sets it
        self._day, self._sent = self._load()
        self._unsaved = 0

    def _load(self) -> tuple[str, int]:
        saved = self.kv.get_many([KV_DAY, KV_BYTES])
        return saved.get(KV_DAY, self._today()), int(saved.get(KV_BYTES, 0))

    def allowance(self, link_type: str) -> Allowance:
        """The kinds and priority classes a claim may take now over ``link_type``."""
        if self.override_all:
            return EVERYTHING
        self._roll_day()
        if self.daily_byte_budget and self._sent >= self.daily_byte_budget:
            return Allowance((ItemKind.METADATA,), None)
        if link_type == "metered":
            allowed = Allowance(_METERED[self.metered_policy], METERED_MAX_PRIORITY)
        else:
            allowed = EVERYTHING
        return self._shed(allowed)

    def _shed(self, allowed: Allowance) -> Allowance:
        if not self.shed_blank_media:
            return allowed
        cap = SHED_MAX_PRIORITY
        if allowed.max_priority is not None:
            cap = min(cap, allowed.max_priority)
        return Allowance(allowed.kinds, cap)

    def sent(self, nbytes: int) -> None:
        self._roll_day()
        self._sent += nbytes
        self._unsaved += nbytes

    @property
    def sent_today(self) -> int:
        return self._sent

    def save(self) -> None:
        """Persist the day's count (batched with the drain's other writes)."""
        if not self._unsaved:
            return
        self.kv.put_many({KV_DAY: self._day, KV_BYTES: str(self._sent)})
        self._unsaved = 0

    def _roll_day(self) -> None:
        today = self._today()
        if today != self._day:
            self._day, self._sent, self._unsaved = today, 0, 1

    def _today(self) -> str:
        return datetime.fromtimestamp(self.clock(), UTC).date().isoformat()
