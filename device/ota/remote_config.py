"""Remote configuration: a desired-config document, checked against the settings model.

A document is ``{section: {key: value}}``. Every key must be a field the settings model marks
remote-changeable (``remote(...)`` in device/config.py); anything else (credentials, trust
keys, paths, nested sections, unknown names) rejects the whole document. Each touched section
is re-validated by its own pydantic model with the new values merged in, so a document is
either entirely valid or changes nothing. Valid values are then assigned to the live
``Settings`` object: the capture loop, IR control, camera and retention read their section at
every use, so those changes apply without a restart. The keys in ``RESTART_KEYS`` are read
once at start; they are applied to the settings and persisted, and take effect after
``restart-agent``. Applied values are persisted and re-applied at the next start
(``apply_persisted``), after the file and the environment: the cloud's word is the latest.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

if TYPE_CHECKING:
    from device.config import Settings
    from device.ota.state import StateFile

log = logging.getLogger("camtrap.ota")

# Read once when the agent starts: the PIR sensor is built with them, the worker exists or not.
RESTART_KEYS = frozenset({"pir.queue_len", "pir.sample_rate", "pir.threshold", "vision.enabled"})
# Changing these rebuilds the vision engine from the serving pack (a hot swap, no restart).
ENGINE_SECTIONS = frozenset({"vision", "location"})

Values = dict[str, dict[str, Any]]


class ConfigRejected(ValueError):
    """The document is invalid; nothing was changed."""


def remote_fields(settings_cls: type[BaseModel] | None = None) -> dict[str, set[str]]:
    """Section -> the keys marked remote-changeable in the settings model."""
    from device.config import Settings

    cls = settings_cls or Settings
    out: dict[str, set[str]] = {}
    for section, info in cls.model_fields.items():
        model = info.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
        keys = {
            name
            for name, field in model.model_fields.items()
            if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("remote")
        }
        if keys:
            out[section] = keys
    return out


def validate(settings: Settings, values: Any) -> Values:
    """The validated (coerced) values, or ``ConfigRejected`` naming the first problem."""
    if not isinstance(values, dict):
        raise ConfigRejected("values must be an object of sections")
    allowed = remote_fields(type(settings))
    out: Values = {}
    for section, changes in values.items():
        if not isinstance(changes, dict):
            raise ConfigRejected(f"{section}: must be an object of keys")
        for key in changes:
            if key not in allowed.get(section, set()):
                raise ConfigRejected(f"{section}.{key}: not remote-changeable (or unknown)")
        live = getattr(settings, section)
        candidate = {**live.model_dump(), **changes}
        try:
            checked = type(live).model_validate(candidate)
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in err["loc"]) or "(section)"
            raise ConfigRejected(f"{section}.{where}: {err['msg']}") from None
        out[section] = {key: getattr(checked, key) for key in changes}
    return out


def apply(settings: Settings, values: Values) -> list[str]:
    """Assign validated values to the live settings; returns the ``section.key``s that
    changed."""
    changed = []
    for section, changes in values.items():
        live = getattr(settings, section)
        for key, value in changes.items():
            if getattr(live, key) != value:
                setattr(live, key, value)
                changed.append(f"{section}.{key}")
    return changed


def apply_persisted(settings: Settings, state: StateFile) -> int:
    """Re-apply the last remote config at start; returns its version (0: none). A stored value
    the current model refuses (an agent upgrade tightened a bound) is skipped, not fatal."""
    with state.lock:
        stored = state.state.config_values
        version = state.state.config_version
    for section, changes in stored.items():
        for key, value in changes.items():
            try:
                apply(settings, validate(settings, {section: {key: value}}))
            except ConfigRejected as exc:
                log.warning("stored remote config value skipped: %s", exc)
    return version


def remember(state: StateFile, version: int, values: Values) -> None:
    with state.lock:
        merged = {k: dict(v) for k, v in state.state.config_values.items()}
        for section, changes in values.items():
            merged.setdefault(section, {}).update(_plain(changes))
        state.state.config_values = merged
        state.state.config_version = version
        state.save()


def _plain(changes: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe copies (tuples, paths, typed tables) of validated values for the state file."""
    out = {}
    for key, value in changes.items():
        if isinstance(value, BaseModel):
            # A typed value (the pushed vision.calibration table) is stored as the document it
            # was pushed as, so apply_persisted validates it again at the next start.
            value = value.model_dump(mode="json")
        elif isinstance(value, tuple):
            value = list(value)
        elif not isinstance(value, str | int | float | bool | list | dict | type(None)):
            value = str(value)
        out[key] = value
    return out
