"""What may go over the link right now: the sync policy (link type and daily byte budget).

Metadata always may: it is small and it is what the cloud needs first. On a metered link
``uplink.metered_policy`` decides (metadata only by default); on Wi-Fi everything goes. Once
``uplink.daily_byte_budget`` bytes were sent today (UTC), only metadata goes until tomorrow.
The day's count lives in ``kv`` so a restart does not reset it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from device.store.db import Database

ALL_KINDS = ("metadata", "thumbnail", "media")
_METERED = {
    "metadata": ("metadata",),
    "thumbnails": ("metadata", "thumbnail"),
    "all": ALL_KINDS,
}
KV_DAY = "uplink.budget_day"
KV_BYTES = "uplink.budget_bytes"


class SyncPolicy:
    def __init__(
        self, db: Database, metered_policy: str = "metadata", daily_byte_budget: int = 0
    ) -> None:
        self.db = db
        self.metered_policy = metered_policy
        self.daily_byte_budget = daily_byte_budget
        self.override_all = False  # `camtrap sync --all`: a technician decided
        self._day, self._sent = self._load()
        self._unsaved = 0

    def _load(self) -> tuple[str, int]:
        with self.db.read() as conn:
            rows = dict(
                conn.execute(
                    "SELECT key, value FROM kv WHERE key IN (?, ?)", (KV_DAY, KV_BYTES)
                ).fetchall()
            )
        return rows.get(KV_DAY, _today()), int(rows.get(KV_BYTES, 0))

    def kinds(self, link_type: str) -> tuple[str, ...]:
        if self.override_all:
            return ALL_KINDS
        self._roll_day()
        if self.daily_byte_budget and self._sent >= self.daily_byte_budget:
            return ("metadata",)
        if link_type == "metered":
            return _METERED[self.metered_policy]
        return ALL_KINDS

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
        with self.db.write() as conn:
            conn.executemany(
                "INSERT INTO kv (key, value) VALUES (?, ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [(KV_DAY, self._day), (KV_BYTES, str(self._sent))],
            )
        self._unsaved = 0

    def _roll_day(self) -> None:
        today = _today()
        if today != self._day:
            self._day, self._sent, self._unsaved = today, 0, 1


def _today() -> str:
    return datetime.now(UTC).date().isoformat()
