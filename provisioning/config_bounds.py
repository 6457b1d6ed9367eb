"""The bounds and defaults of config keys, read from the agent's config model: one source.

camtrap-provision asks for a few values that end up in ``camtrap.toml`` (the PIR pin, the burst,
the cooldown, ...). It checks each against the constraints the agent will load it with
(``Field(ge=..., le=...)`` in ``device.config``) and proposes the model's default, so what the
script accepts and what the agent accepts cannot drift apart.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from device.config import Settings


@dataclass(frozen=True)
class Bounds:
    """A number's allowed range; a missing end is unbounded, an open end excludes its value."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # gt rather than ge
    high_open: bool = False  # lt rather than le
    integer: bool = False

    def admits(self, number: float) -> bool:
        if number != number:  # NaN is never in range
            return False
        if self.low is not None and (number <= self.low if self.low_open else number < self.low):
            return False
        if self.high is not None:
            return number < self.high if self.high_open else number <= self.high
        return True

    def describe(self) -> str:
        """``between 0 and 27``, ``at least 0``, ``more than 0 and less than 1``; '' if any."""
        if self.low is not None and self.high is not None and not (self.low_open or self.high_open):
            return f"between {self.low:g} and {self.high:g}"
        parts = []
        if self.low is not None:
            parts.append(f"{'more than' if self.low_open else 'at least'} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'less than' if self.high_open else 'at most'} {self.high:g}")
        return " and ".join(parts)


@dataclass(frozen=True)
class ConfigField:
    """One key of the config model as provisioning needs it."""

    key: str  # dotted, as in camtrap.toml: "capture.cooldown_s", "uplink.mqtt.port"
    bounds: Bounds
    default: Any  # None: the model leaves the key unset


def _field_info(key: str) -> FieldInfo:
    model: type[BaseModel] = Settings
    *sections, name = key.split(".")
    for section in sections:
        inner = model.model_fields[section].annotation
        if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
            raise KeyError(f"{key}: {section} is not a section of the config model")
        model = inner
    if name not in model.model_fields:
        raise KeyError(f"{key}: not a key of the config model")
    return model.model_fields[name]


def _is_integer(annotation: Any) -> bool:
    """``int`` or ``int | None``; a bool is not a number here."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        kinds = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return len(kinds) == 1 and _is_integer(kinds[0])
    return annotation is int


def _limit(value: object) -> float:
    # The model's numeric bounds are plain numbers; anything else is a model this cannot read.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"not a numeric bound: {value!r}")
    return value


def config_field(key: str) -> ConfigField:
    """The bounds and default ``device.config`` gives ``key``; KeyError if it has no such key."""
    info = _field_info(key)
    low = high = None
    low_open = high_open = False
    for constraint in info.metadata:
        if isinstance(constraint, annotated_types.Ge):
            low, low_open = _limit(constraint.ge), False
        elif isinstance(constraint, annotated_types.Gt):
            low, low_open = _limit(constraint.gt), True
        elif isinstance(constraint, annotated_types.Le):
            high, high_open = _limit(constraint.le), False
        elif isinstance(constraint, annotated_types.Lt):
            high, high_open = _limit(constraint.lt), True
    bounds = Bounds(low, high, low_open, high_open, integer=_is_integer(info.annotation))
    return ConfigField(key, bounds, info.get_default(call_default_factory=True))
