"""camtrap-provision asks for config values within the agent's own bounds and defaults.

Every question that becomes a ``camtrap.toml`` key names it (``Question.setting``); these tests
hold each such question to the config model in ``device.config``, so the two cannot drift apart
(they once did: the timelapse cap differed).
"""

from __future__ import annotations

import os
import types
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from device.config import Settings
from provisioning import configfile
from provisioning.config_bounds import Bounds, config_field
from provisioning.paths import Paths
from provisioning.questions import BY_KEY, QUESTIONS, Question, check_given, complete

ROOT = Path(__file__).resolve().parents[1]
SETTING_QUESTIONS = [q for q in QUESTIONS if q.setting is not None]


@pytest.fixture(autouse=True)
def _no_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    """The model alone decides here: no CAMTRAP_* variable of the caller may change a value."""
    for name in list(os.environ):
        if name.upper().startswith("CAMTRAP_"):
            monkeypatch.delenv(name)


def _model_field(key: str) -> FieldInfo:
    """The model's field for a dotted key, found by pydantic's own field table."""
    model: type[BaseModel] = Settings
    *sections, name = key.split(".")
    for section in sections:
        model = model.model_fields[section].annotation  # type: ignore[assignment]
    return model.model_fields[name]


def _model_number_kind(key: str) -> type | None:
    """int or float for a numeric key (``int | None`` included), None for any other."""
    annotation = _model_field(key).annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        kinds = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = kinds[0] if len(kinds) == 1 else None
    return annotation if annotation in (int, float) else None


def _nested(key: str, value: Any) -> dict[str, Any]:
    *sections, name = key.split(".")
    data: dict[str, Any] = {name: value}
    for section in reversed(sections):
        data = {section: data}
    return data


def _model_accepts(key: str, value: Any) -> bool:
    try:
        Settings(**_nested(key, value))
    except ValidationError:
        return False
    return True


def _question_accepts(q: Question, value: Any) -> bool:
    try:
        q.parse(str(value), {})
    except ValueError:
        return False
    return True


def _probes(key: str) -> list[float]:
    """Numbers on and either side of each bound the model states, and far beyond both."""
    field = _model_field(key)
    step = 1.0 if _model_number_kind(key) is int else 0.001
    values = [0.0, 1.0, -1.0, 1e9, -1e9]
    for constraint in field.metadata:
        for name in ("ge", "gt", "le", "lt"):
            bound = getattr(constraint, name, None)
            if bound is not None:
                values += [bound - step, bound, bound + step]
    return values


NUMERIC = [q for q in SETTING_QUESTIONS if _model_number_kind(q.setting or "") is not None]


def test_the_numeric_questions_are_the_ones_the_technician_is_asked_about():
    # The probe below must not pass by checking nothing.
    assert {q.setting for q in NUMERIC} >= {
        "location.latitude",
        "location.longitude",
        "location.coordinate_uncertainty_m",
        "pir.pin",
        "ir.pin",
        "capture.burst_frames",
        "capture.cooldown_s",
        "capture.timelapse_interval_s",
        "uplink.mqtt.port",
    }


@pytest.mark.parametrize("q", NUMERIC, ids=lambda q: q.key)
def test_a_question_accepts_exactly_the_numbers_the_config_model_accepts(q: Question):
    assert q.setting is not None
    for value in _probes(q.setting):
        if _model_number_kind(q.setting) is int:
            value = int(value)
        assert _question_accepts(q, value) == _model_accepts(q.setting, value), (
            f"{q.key} and [{q.setting}] disagree on {value!r}"
        )
    # Stricter than the model on one thing only: no infinite or NaN answer, even unbounded.
    for text in ("inf", "-inf", "nan"):
        assert not _question_accepts(q, text)


@pytest.mark.parametrize("q", NUMERIC, ids=lambda q: q.key)
def test_a_refused_number_is_explained_with_the_models_bounds(q: Question):
    assert q.setting is not None
    bounds = config_field(q.setting).bounds
    assert bounds.low is not None  # every number asked about has one
    with pytest.raises(ValueError) as refused:
        q.parse(str(bounds.low - 1), {})
    assert f"must be {bounds.describe()}" in str(refused.value)


@pytest.mark.parametrize("q", SETTING_QUESTIONS, ids=lambda q: q.key)
def test_a_question_proposes_the_config_models_default(q: Question):
    assert q.setting is not None
    model_default = _model_field(q.setting).get_default(call_default_factory=True)
    proposed = q.default({})  # no location, no earlier run, no existing broker
    if model_default is not None:
        assert proposed == model_default
        assert type(proposed) is type(model_default)
    elif proposed is not None:
        # The model leaves the key unset; the script may propose a value the agent accepts.
        assert _model_accepts(q.setting, proposed)
    if proposed is not None:
        assert q.parse(proposed, {}) == proposed


def test_the_bounds_helper_reads_open_and_missing_ends_as_the_model_states_them():
    threshold = config_field("pir.threshold").bounds  # gt=0, lt=1
    assert threshold == Bounds(0, 1, low_open=True, high_open=True, integer=False)
    assert not threshold.admits(0) and threshold.admits(0.5) and not threshold.admits(1)
    assert threshold.describe() == "more than 0 and less than 1"
    interval = config_field("telemetry.interval_s").bounds  # ge=1, no upper bound
    assert interval.high is None and interval.admits(1e12) and not interval.admits(0.5)
    assert interval.describe() == "at least 1"
    assert config_field("uplink.mqtt.port").bounds == Bounds(1, 65535, integer=True)
    assert config_field("device.timezone").bounds == Bounds()
    with pytest.raises(KeyError):
        config_field("capture.no_such_key")


def _answers() -> dict[str, Any]:
    given = check_given(
        {
            "deployment.location_name": "Tree 14",
            "deployment.latitude": "38.9",
            "deployment.longitude": "-77.0",
            "deployment.coordinate_uncertainty_m": "12",
            "deployment.country": "USA",
            "deployment.admin1": "VA",
            "device.timezone": "America/New_York",
            # Not the defaults, so a key written to the wrong place cannot pass by chance.
            "pir.pin": "22",
            "ir.pin": "23",
            "capture.burst_frames": "4",
            "capture.cooldown_s": "7.5",
            "capture.timelapse_interval_s": "900",
            "registration.method": "keep",
            "broker.host": "broker.example.org",
            "broker.port": "8884",
        }
    )
    answers, missing = complete(given, {"_has_credentials": True})
    assert missing == []
    return answers


def test_each_answer_reaches_the_agent_under_the_setting_its_question_names(tmp_path: Path):
    answers = _answers()
    data, secrets = configfile.build(
        Paths(tmp_path),
        {},
        answers,
        "trap-1",
        "trap-1-dep",
        None,
        (answers["broker.host"], answers["broker.port"]),
    )
    settings = configfile.validate(data, secrets)
    for q in SETTING_QUESTIONS:
        assert q.setting is not None
        value: Any = settings
        for part in q.setting.split("."):
            value = getattr(value, part)
        assert value == answers[q.key], f"{q.key} did not arrive at [{q.setting}]"


def test_the_field_guide_states_the_bounds_and_defaults_the_model_has():
    guide = (ROOT / "docs" / "field-guide.md").read_text()
    pir, ir = config_field("pir.pin"), config_field("ir.pin")
    assert pir.bounds == ir.bounds  # one range stated for both pins
    assert f"BCM GPIO {pir.bounds.low:g}-{pir.bounds.high:g} (PIR default {pir.default})" in guide
    burst = config_field("capture.burst_frames")
    assert f"{burst.bounds.low:g}-{burst.bounds.high:g} frames (default {burst.default})" in guide
    cooldown = config_field("capture.cooldown_s")
    assert (
        f"{cooldown.bounds.low:g}-{cooldown.bounds.high:g} s (default {cooldown.default:g})"
        in guide
    )
    timelapse = config_field("capture.timelapse_interval_s")
    assert f"every {timelapse.default:g} s by default" in guide


def test_the_pin_help_states_the_models_range():
    for key in ("pir.pin", "ir.pin"):
        bounds = config_field(key).bounds
        assert f"({bounds.low:g}-{bounds.high:g})" in BY_KEY[key].help
