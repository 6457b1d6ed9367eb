"""The ingest's HTTP client for a Vertex AI-format ``:predict`` endpoint (``camtrap-cloud
predict``, or Vertex AI itself): JPEGs out as base64 ``content``, one answer per image back.

Each image gets a ``MachineVerdict`` or a ``Refused`` (the endpoint's own 400 for that image:
not a JPEG, cannot be decoded). Anything else that goes wrong (no connection, a timeout, a 5xx,
a wrong token, an answer it cannot read) raises ``EndpointUnavailable`` with one line naming
the host: the images stay queued and are sent again later.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloud_stub.ingest.prediction_queue import MachineVerdict
from device.contracts.errors import UserError

__all__ = [
    "Answer",
    "EndpointUnavailable",
    "PredictClient",
    "Refused",
    "TooLarge",
    "check_predict_url",
    "token_from_file",
]

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_PREDICTIONS = 5
MAX_ANSWER_BYTES = 8 * 1024 * 1024


class EndpointUnavailable(Exception):
    """The endpoint gave no answer about the images (one line): try again later."""


class TooLarge(EndpointUnavailable):
    """413: the request was over the endpoint's size limit."""


@dataclass(frozen=True)
class Refused:
    reason: str  # the endpoint's message for this image


@dataclass(frozen=True)
class Answer:
    deployed_model_id: str
    results: list[MachineVerdict | Refused]  # one per image, in order


def check_predict_url(url: str) -> str:
    """``url`` if it names a ``:predict`` endpoint over http(s); else ``UserError`` (2)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"--predict-url {url}: must be an http:// or https:// URL")
    if not parts.path.endswith(":predict"):
        raise UserError(
            f"--predict-url {url}: must end with the endpoint's ':predict', e.g. "
            "http://HOST:8501/v1/projects/P/locations/L/endpoints/E:predict"
        )
    return url


def token_from_file(path: Path) -> Callable[[], str]:
    """A token source reading ``path`` (mode 0600) now, to fail at start, and again on each
    request, so a token renewed in place (an OAuth access token) is picked up."""
    from cloud_stub.predict.auth import read_token

    def read() -> str:
        try:
            return read_token(path)
        except UserError as exc:
            message = exc.message.replace("--token-file", "--predict-token-file", 1)
            raise UserError(message, exc.code) from exc

    read()
    return read


class PredictClient:
    def __init__(
        self,
        url: str,
        token: Callable[[], str] | None = None,
        *,
        country: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_predictions: int = DEFAULT_MAX_PREDICTIONS,
    ) -> None:
        self.url = url
        self.host = urllib.parse.urlsplit(url).netloc
        self.token = token
        self.country = country
        self.timeout_s = timeout_s
        self.max_predictions = max_predictions

    def predict(self, images: list[bytes]) -> Answer:
        parameters: dict[str, Any] = {"confidenceThreshold": 0.0}
        parameters["maxPredictions"] = self.max_predictions
        if self.country:
            parameters["country"] = self.country
        body = json.dumps(
            {
                "instances": [{"content": base64.b64encode(i).decode("ascii")} for i in images],
                "parameters": parameters,
            }
        ).encode()
        status, answer = self._post(body)
        slots = answer.get("predictions") if isinstance(answer, dict) else None
        if status == 200 or (status == 400 and isinstance(slots, list)):
            return self._answer(answer, len(images))
        message = _message(answer) or f"HTTP {status}"
        if status == 413:
            raise TooLarge(f"predict endpoint {self.host}: request too large ({message})")
        if status in (401, 403):
            raise EndpointUnavailable(f"predict endpoint {self.host}: token refused ({message})")
        raise EndpointUnavailable(f"predict endpoint {self.host}: HTTP {status}: {message}")

    def _post(self, body: bytes) -> tuple[int, Any]:
        request = urllib.request.Request(self.url, data=body, method="POST")
        request.add_header("Content-Type", "application/json")
        if self.token is not None:
            try:
                token = self.token()
            except UserError as exc:
                raise EndpointUnavailable(exc.message) from exc
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return response.status, _json(response.read(MAX_ANSWER_BYTES + 1))
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, _json(exc.read(MAX_ANSWER_BYTES + 1))
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, TimeoutError):
                reason = f"no answer within {self.timeout_s:g} s"
            reason = getattr(reason, "strerror", None) or reason
            raise EndpointUnavailable(f"predict endpoint {self.host}: {reason}") from exc

    def _answer(self, answer: Any, count: int) -> Answer:
        slots = answer.get("predictions")
        model = answer.get("deployedModelId")
        if not isinstance(slots, list) or len(slots) != count or not isinstance(model, str):
            raise EndpointUnavailable(
                f"predict endpoint {self.host}: answer without {count} predictions and a "
                "deployedModelId"
            )
        try:
            return Answer(model, [_verdict(slot, model) for slot in slots])
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise EndpointUnavailable(
                f"predict endpoint {self.host}: a prediction it cannot read ({exc!r})"
            ) from exc


def _json(data: bytes) -> Any:
    if len(data) > MAX_ANSWER_BYTES:
        return None
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None


def _message(answer: Any) -> str | None:
    error = answer.get("error") if isinstance(answer, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return " ".join(error["message"].split())[:300]
    return None


def _verdict(slot: dict[str, Any], model: str) -> MachineVerdict | Refused:
    if "error" in slot:
        return Refused(_message(slot) or "refused by the endpoint")
    names = list(slot["displayNames"])
    confidences = [float(c) for c in slot["confidences"]]
    ids = list(slot.get("ids", [None] * len(names)))
    kind = slot.get("observationType")
    if kind is None:  # a plain Vertex classifier: its top label is all there is
        kind = "blank" if slot.get("blank") else "animal" if names else "unknown"
    scientific = slot.get("scientificName")
    if scientific is None and kind == "animal" and names:
        scientific = names[0]
    probability = slot.get("confidence")
    if probability is None and confidences:
        probability = confidences[0]
    blank_score = slot.get("blankScore")
    return MachineVerdict(
        observation_type=str(kind),
        scientific_name=scientific,
        common_name=slot.get("commonName"),
        taxon_level=slot.get("taxonLevel"),
        taxonomy=slot.get("taxonomy"),
        probability=None if probability is None else float(probability),
        blank_score=None if blank_score is None else float(blank_score),
        classified_by=model,
        details={
            "source": "predict",
            "top": [
                {"label": n, "score": c, "id": i}
                for n, c, i in zip(names, confidences, ids, strict=False)
            ],
            "geofence": slot.get("geofence"),
        },
    )
