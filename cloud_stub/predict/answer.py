"""One instance's prediction in Vertex AI's ClassificationPredictionResult shape (``ids``,
``displayNames``, ``confidences``), with the trap's verdict beside it."""

from __future__ import annotations

from typing import Any

from cloud_stub.predict.engine import MAX_PREDICTIONS, Classified
from cloud_stub.predict.request import Parameters

__all__ = ["error_slot", "prediction"]


def prediction(classified: Classified, parameters: Parameters) -> dict[str, Any]:
    """The labels the classifier scored highest, descending, cut by ``confidenceThreshold``
    and ``maxPredictions``; ``blank`` and ``observationType`` are the trap's verdict on the
    image (its blank operating point, geofence and roll-up), not a cut of those labels."""
    result = classified.result
    top = result.details.get("top", [])
    most = min(parameters.max_predictions, MAX_PREDICTIONS)
    kept = [
        (label_id, entry)
        for label_id, entry in zip(classified.ids, top, strict=True)
        if entry["score"] >= parameters.confidence_threshold
    ][:most]
    geofence = result.details.get("geofence", {})
    return {
        # Vertex states ids as int64 in string form: here, the label's line in the pack.
        "ids": [str(label_id) for label_id, _ in kept],
        "displayNames": [entry["label"] for _, entry in kept],
        "confidences": [entry["score"] for _, entry in kept],
        "blank": result.is_blank,
        "blankScore": result.blank_score,
        "observationType": result.observation_type,
        "scientificName": result.scientific_name,
        "commonName": result.common_name,
        "taxonLevel": result.taxon_level,
        "taxonomy": result.taxonomy,
        "confidence": result.confidence,
        "geofence": {"active": bool(geofence.get("active")), "country": geofence.get("country")},
    }


def error_slot(message: str) -> dict[str, Any]:
    """What stands in the place of an instance that could not be classified."""
    return {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": message}}
