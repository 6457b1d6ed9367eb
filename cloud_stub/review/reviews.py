"""Storing a review: a new human observation next to the machine one, never over it.

The row is a Camtrap DP observation (classificationMethod ``human``, classifiedBy the user);
``details`` links it to the machine observation it reviews, so exports and the training
hand-off can prefer it and still show what the model said.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any, TypedDict

from cloud_stub.ingest.database import Database
from cloud_stub.review.taxa import Choice
from device.contracts.protocol import ObservationType
from device.contracts.taxa import HUMAN_TAXONOMY

ACTIONS = ("confirm", "correct", "blank", "human", "vehicle")
MAX_COUNT = 10_000


class ReviewError(ValueError):
    pass


class Label(TypedDict):
    """What a review says the event shows, in the observation row's own columns."""

    observation_type: ObservationType
    scientific_name: str | None
    common_name: str | None
    taxon_level: str | None  # a TaxonLevel, or the pack's own word for a picked taxon's rank
    taxonomy: str | None


def _without_taxon(observation_type: ObservationType) -> Label:
    return Label(
        observation_type=observation_type,
        scientific_name=None,
        common_name=None,
        taxon_level=None,
        taxonomy=None,
    )


def _label(action: str, machine: dict[str, Any] | None, choice: Choice | None) -> Label:
    if action == "confirm":
        if machine is None or machine["observation_type"] in ("unknown", "unclassified"):
            raise ReviewError("the machine gave no label to confirm: pick a taxon or a type")
        return Label(
            observation_type=machine["observation_type"],
            scientific_name=machine["scientific_name"],
            common_name=machine["common_name"],
            taxon_level=machine["taxon_level"],
            taxonomy=machine["taxonomy"],
        )
    if action == "correct":
        if choice is None:
            raise ReviewError("a correction needs a taxon")
        is_human = choice.scientific_name.casefold() == "homo sapiens"
        return Label(
            observation_type="human" if is_human else "animal",
            scientific_name=choice.scientific_name,
            common_name=choice.common_name,
            taxon_level=choice.taxon_level,
            taxonomy=choice.taxonomy,
        )
    if action == "human":
        return Label(
            observation_type="human",
            scientific_name="Homo sapiens",
            common_name="human",
            taxon_level="species",
            taxonomy=HUMAN_TAXONOMY,
        )
    if action == "blank":
        return _without_taxon("blank")
    if action == "vehicle":
        return _without_taxon("vehicle")
    raise ReviewError(f"unknown action {action!r}")


def save_review(
    db: Database,
    event_id: str,
    *,
    username: str,
    action: str,
    choice: Choice | None = None,
    count: int | None = None,
) -> str:
    """Store one review of ``event_id``; returns the new observation's id."""
    if count is not None and not 1 <= count <= MAX_COUNT:
        raise ReviewError(f"count must be 1 to {MAX_COUNT}")
    db.begin()
    try:
        event = db.execute("SELECT * FROM events WHERE event_id = ?", (event_id,)).fetchone()
        if event is None:
            raise ReviewError(f"no event {event_id!r}")
        machine = db.execute(
            "SELECT * FROM observations WHERE event_id = ? AND observation_level = 'event' "
            "AND classification_method = 'machine' LIMIT 1",
            (event_id,),
        ).fetchone()
        machine = dict(machine) if machine else None
        previous = db.execute(
            "SELECT observation_id FROM observations WHERE event_id = ? "
            "AND classification_method = 'human' ORDER BY classification_timestamp DESC LIMIT 1",
            (event_id,),
        ).fetchone()
        label = _label(action, machine, choice)
        if label["observation_type"] == "blank":
            count = None
        elif count is None:
            count = (machine or {}).get("count") if action == "confirm" else None
            count = count or 1
        details: dict[str, Any] = {
            "reviews": machine["observation_id"] if machine else None,
            "action": action,
        }
        if previous is not None:
            details["supersedes"] = previous["observation_id"]
        observation_id = str(uuid.uuid4())
        start = event["event_start"]
        end = event["event_end"] or start
        db.execute(
            "INSERT INTO observations(observation_id, deployment_id, media_id, event_id, "
            "event_start, event_end, observation_level, observation_type, scientific_name, "
            "common_name, taxon_level, taxonomy, count, classification_method, classified_by, "
            "classification_timestamp, details) "
            "VALUES (?, ?, NULL, ?, ?, ?, 'event', ?, ?, ?, ?, ?, ?, 'human', ?, ?, ?)",
            (
                observation_id,
                event["deployment_id"],
                event_id,
                machine["event_start"] if machine else start,
                machine["event_end"] if machine else end,
                label["observation_type"],
                label["scientific_name"],
                label["common_name"],
                label["taxon_level"],
                label["taxonomy"],
                count,
                username,
                # Microseconds: "the latest review wins" must not tie within one second.
                datetime.now(UTC).isoformat(),
                json.dumps(details),
            ),
        )
        db.commit()
    except BaseException:
        db.rollback()
        raise
    return observation_id
