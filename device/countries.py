"""Country codes: the one check of an ISO 3166-1 alpha-3 code, wherever a country is given.

``camtrap classify --country``, ``[location] country`` in the config and camtrap-provision's
``deployment.country`` answer all go through ``check_country``; the valid codes are every code
in ``device/models/continents.json`` (the table the model packs' geofences use).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

CONTINENTS_JSON = Path(__file__).resolve().parent / "models" / "continents.json"


@cache
def known_countries() -> frozenset[str]:
    data = json.loads(CONTINENTS_JSON.read_text())
    return frozenset(code for codes in data["continents"].values() for code in codes)


def check_country(code: str) -> str:
    """The code in capitals, or ValueError saying why it is not an ISO 3166-1 alpha-3 code."""
    code = code.strip().upper()
    if len(code) != 3 or not code.isalpha():
        raise ValueError(f"{code!r} is not an ISO 3166-1 alpha-3 code (three letters, e.g. KEN)")
    if code not in known_countries():
        raise ValueError(f"unknown country code {code!r} (ISO 3166-1 alpha-3, e.g. KEN, USA)")
    return code
