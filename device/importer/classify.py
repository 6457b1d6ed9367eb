"""Classifying what an import stored, when no agent runs to do it.

The same worker the agent runs, on the same serving pack (the one OTA installed, else
``vision.pack``), so an imported event gets the verdict, thumbnails and upload order it would
have got from the agent. Imported photos show another camera's scene: the trap's memory of
its own empty scene takes no part (the worker leaves it out for imported events). An event
left unclassified (no pack serving, a stop) is classified by the agent when it starts.
"""

from __future__ import annotations

from device.config import Settings
from device.ota.agent_hooks import load_engine
from device.store.store import MediaStore
from device.vision.worker import ClassificationWorker

# An import's classification runs as long as it needs; this only bounds a stuck worker.
CLASSIFY_TIMEOUT_S = 24 * 3600.0


def classify_events(settings: Settings, store: MediaStore, event_ids: list[str]) -> dict[str, int]:
    """Classify ``event_ids``; returns counts by outcome (animal, blank, ..., unclassified)."""
    engine = load_engine(settings)
    worker = ClassificationWorker(settings, store, engine, site_memory=None)
    worker.start()
    try:
        for event_id in event_ids:
            worker.submit(event_id)
        worker.wait_idle(CLASSIFY_TIMEOUT_S)
    finally:
        worker.stop()
    stats = worker.stats
    return {
        "animal": stats.animals,
        "blank": stats.blanks,
        "human": stats.humans,
        "vehicle": stats.vehicles,
        "other": stats.unclassified,  # unknown, or no model serving
        "failed": stats.errors,
    }
