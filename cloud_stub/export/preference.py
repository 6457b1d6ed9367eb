"""Which observations speak for a capture: a person's label beats the machine's.

Review never overwrites: a human verdict is a new ``observations`` row with
``classification_method='human'`` next to the machine rows, and its ``details`` JSON may name
the machine row it reviews (``{"reviews": "<observationID>", "action": ...}``). The rule, used
by the Camtrap DP export and the training hand-off alike:

1. A machine row is superseded when a human row reviews it, when a human row covers the same
   media (same event and mediaID), or when an event-level human row covers its event.
2. Of several human rows reviewing the same machine row, the latest
   (``classification_timestamp``, then ``observation_id``) wins: a correction of a correction.
3. Human rows that review nothing are all kept (a frame may hold two species).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Final, TypeVar

from device.contracts.protocol import ClassificationMethod

HUMAN: Final[ClassificationMethod] = "human"

# Whatever row type goes in comes back out: callers keep their dicts (or sqlite rows).
Row = TypeVar("Row", bound=Mapping[str, Any])


def reviewed_id(row: Mapping[str, Any]) -> str | None:
    details = row.get("details")
    if isinstance(details, str):
        try:
            details = json.loads(details)
        except ValueError:
            return None
    if isinstance(details, dict) and isinstance(details.get("reviews"), str):
        return details["reviews"]
    return None


def _when(row: Mapping[str, Any]) -> tuple[float, str]:
    stamp = row.get("classification_timestamp")
    try:
        seconds = datetime.fromisoformat(stamp).timestamp() if stamp else float("-inf")
    except ValueError:
        seconds = float("-inf")
    return seconds, str(row.get("observation_id"))


def preferred_observations(rows: Iterable[Row]) -> list[Row]:
    """The rows to publish or train on, in their original order (snake_case ingest rows)."""
    listed = list(rows)
    latest_review: dict[str, Row] = {}
    humans: list[Row] = []
    for row in listed:
        if row.get("classification_method") != HUMAN:
            continue
        target = reviewed_id(row)
        if target is None:
            humans.append(row)
        elif target not in latest_review or _when(row) > _when(latest_review[target]):
            latest_review[target] = row
    humans.extend(latest_review.values())
    keep_humans = {id(row) for row in humans}
    covered_media = {(h.get("event_id"), h.get("media_id")) for h in humans}
    covered_events = {h.get("event_id") for h in humans if h.get("media_id") is None}
    chosen: list[Row] = []
    for row in listed:
        if row.get("classification_method") == HUMAN:
            if id(row) in keep_humans:
                chosen.append(row)
            continue
        superseded = (
            row.get("observation_id") in latest_review
            or (row.get("event_id"), row.get("media_id")) in covered_media
            or row.get("event_id") in covered_events
        )
        if not superseded:
            chosen.append(row)
    return chosen
