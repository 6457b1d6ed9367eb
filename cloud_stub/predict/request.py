"""A Vertex AI image-classification ``:predict`` request, checked: its instances' JPEG bytes and
its parameters, or the one reason it cannot be answered at all."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

__all__ = ["BadInstance", "BadRequest", "Parameters", "PredictRequest", "parse_request"]

# Vertex's documented defaults for ImageClassificationPredictionParams.
DEFAULT_CONFIDENCE_THRESHOLD = 0.0
DEFAULT_MAX_PREDICTIONS = 10
JPEG_MAGIC = b"\xff\xd8\xff"


class BadRequest(ValueError):
    """The whole request is refused (HTTP 400) for this reason."""


@dataclass(frozen=True)
class BadInstance:
    """An instance that cannot be classified; its slot of the answer says why."""

    message: str


@dataclass(frozen=True)
class Parameters:
    confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD
    max_predictions: int = DEFAULT_MAX_PREDICTIONS
    country: str | None = None


@dataclass(frozen=True)
class PredictRequest:
    instances: list[bytes | BadInstance]  # each instance's JPEG, or why it is not one
    parameters: Parameters


def parse_request(body: bytes, max_instances: int) -> PredictRequest:
    """The request in ``body``; ``BadRequest`` when it is not one this endpoint can answer."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"body is not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object with 'instances'")
    instances = data.get("instances")
    if not isinstance(instances, list) or not instances:
        raise BadRequest("'instances' must be a non-empty list of {\"content\": <base64 JPEG>}")
    if len(instances) > max_instances:
        raise BadRequest(
            f"at most {max_instances} instances per request (--max-instances), got {len(instances)}"
        )
    return PredictRequest(
        [_instance(i, raw) for i, raw in enumerate(instances)],
        _parameters(data.get("parameters")),
    )


def _instance(index: int, raw: Any) -> bytes | BadInstance:
    where = f"instance {index}"
    if not isinstance(raw, dict) or not isinstance(raw.get("content"), str):
        return BadInstance(f'{where}: needs "content": a base64 string')
    try:
        jpeg = base64.b64decode(raw["content"], validate=True)
    except (binascii.Error, ValueError):
        return BadInstance(f"{where}: content is not base64")
    if not jpeg.startswith(JPEG_MAGIC):
        return BadInstance(f"{where}: not a JPEG")
    return jpeg


def _parameters(raw: Any) -> Parameters:
    if raw is None:
        return Parameters()
    if not isinstance(raw, dict):
        raise BadRequest("'parameters' must be a JSON object")
    threshold = raw.get("confidenceThreshold", DEFAULT_CONFIDENCE_THRESHOLD)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise BadRequest("parameters.confidenceThreshold must be a number from 0 to 1")
    if not 0.0 <= threshold <= 1.0:
        raise BadRequest(f"parameters.confidenceThreshold {threshold}: must be from 0 to 1")
    most = raw.get("maxPredictions", DEFAULT_MAX_PREDICTIONS)
    if isinstance(most, bool) or not isinstance(most, int) or most < 1:
        raise BadRequest("parameters.maxPredictions must be a whole number of 1 or more")
    country = raw.get("country")
    if country is not None and (not isinstance(country, str) or not country.strip()):
        raise BadRequest('parameters.country must be an ISO 3166-1 alpha-3 code, e.g. "KEN"')
    return Parameters(float(threshold), most, None if country is None else country.strip().upper())
