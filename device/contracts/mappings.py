"""Layered settings documents (``{section: {key: value}}``) merged one over another."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

__all__ = ["deep_merge"]


def deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` laid over it: where both hold a mapping under one key, the two
    are merged the same way; anywhere else ``extra``'s value wins. Neither input is changed,
    and the result shares no mutable value with them (a caller may edit it freely)."""
    out = copy.deepcopy(dict(base))
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
