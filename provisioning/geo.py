"""Countries from coordinates, offline: a small bounding-box table typed for this project.

Bounding boxes are rough. Near a border, or where boxes overlap (most of Africa), a point can
fall in several; inside a country missing from the table it falls in none. So the answer is a
list of candidates, smallest box first, which the technician confirms or overrides. Valid
codes are every ISO 3166-1 alpha-3 code in ``device/models/continents.json``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

# One check of a country code for the whole product (camtrap classify --country, the config).
from device.countries import CONTINENTS_JSON, check_country, known_countries

__all__ = [
    "CONTINENTS_JSON",
    "ZoneGuess",
    "check_country",
    "check_us_state",
    "countries_at",
    "known_countries",
    "timezone_at",
]

# alpha-3: (south, north, west, east) in degrees; several boxes where one would be absurd.
BOXES: dict[str, tuple[tuple[float, float, float, float], ...]] = {
    # Africa
    "KEN": ((-4.7, 5.0, 33.9, 41.9),),
    "TZA": ((-11.75, -0.99, 29.3, 40.45),),
    "UGA": ((-1.5, 4.25, 29.5, 35.05),),
    "RWA": ((-2.85, -1.05, 28.85, 30.9),),
    "BDI": ((-4.5, -2.3, 29.0, 30.85),),
    "ETH": ((3.4, 14.9, 33.0, 48.0),),
    "SOM": ((-1.7, 12.0, 41.0, 51.4),),
    "SDN": ((8.65, 22.25, 21.8, 38.6),),
    "SSD": ((3.45, 12.25, 23.4, 36.0),),
    "EGY": ((22.0, 31.7, 24.7, 36.9),),
    "LBY": ((19.5, 33.2, 9.3, 25.2),),
    "DZA": ((18.95, 37.1, -8.7, 12.0),),
    "MAR": ((27.65, 35.95, -13.2, -1.0),),
    "SEN": ((12.3, 16.7, -17.55, -11.35),),
    "CIV": ((4.35, 10.75, -8.6, -2.5),),
    "GHA": ((4.7, 11.2, -3.3, 1.2),),
    "NGA": ((4.25, 13.9, 2.65, 14.7),),
    "CMR": ((1.65, 13.1, 8.45, 16.2),),
    "TCD": ((7.4, 23.45, 13.45, 24.0),),
    "CAF": ((2.2, 11.0, 14.4, 27.5),),
    "GAB": ((-4.0, 2.35, 8.65, 14.55),),
    "COG": ((-5.05, 3.75, 11.1, 18.65),),
    "COD": ((-13.5, 5.4, 12.2, 31.35),),
    "AGO": ((-18.05, -4.35, 11.6, 24.1),),
    "ZMB": ((-18.1, -8.2, 21.9, 33.7),),
    "MWI": ((-17.2, -9.35, 32.65, 35.95),),
    "MOZ": ((-26.9, -10.4, 30.2, 40.9),),
    "ZWE": ((-22.4, -15.6, 25.2, 33.1),),
    "BWA": ((-26.9, -17.8, 19.9, 29.4),),
    "NAM": ((-28.97, -16.96, 11.7, 25.3),),
    "ZAF": ((-34.85, -22.1, 16.45, 32.9),),
    "MDG": ((-25.65, -11.9, 43.2, 50.5),),
    # The Americas
    "USA": (
        (24.4, 49.4, -124.8, -66.9),
        (51.2, 71.4, -179.2, -129.9),
        (18.9, 22.25, -160.25, -154.8),
    ),
    "CAN": ((41.7, 83.1, -141.0, -52.6),),
    "MEX": ((14.5, 32.7, -118.4, -86.7),),
    "GTM": ((13.7, 17.8, -92.25, -88.2),),
    "BLZ": ((15.9, 18.5, -89.25, -87.5),),
    "HND": ((12.98, 16.5, -89.35, -83.15),),
    "NIC": ((10.7, 15.0, -87.7, -83.1),),
    "CRI": ((8.0, 11.25, -85.95, -82.55),),
    "PAN": ((7.2, 9.65, -83.05, -77.15),),
    "COL": ((-4.25, 12.45, -79.0, -66.85),),
    "VEN": ((0.65, 12.2, -73.4, -59.8),),
    "GUY": ((1.15, 8.6, -61.4, -56.5),),
    "SUR": ((1.8, 6.0, -58.1, -53.95),),
    "GUF": ((2.1, 5.8, -54.6, -51.6),),
    "ECU": ((-5.0, 1.45, -81.1, -75.2), (-1.5, 0.7, -92.0, -89.2)),
    "PER": ((-18.35, -0.05, -81.35, -68.65),),
    "BOL": ((-22.9, -9.7, -69.65, -57.45),),
    "BRA": ((-33.75, 5.3, -74.0, -34.8),),
    "PRY": ((-27.6, -19.3, -62.65, -54.25),),
    "URY": ((-35.0, -30.1, -58.45, -53.1),),
    "ARG": ((-55.1, -21.8, -73.6, -53.6),),
    "CHL": ((-55.9, -17.5, -75.7, -66.4),),
    # Europe
    "GBR": ((49.9, 60.9, -8.65, 1.8),),
    "IRL": ((51.4, 55.4, -10.5, -6.0),),
    "FRA": ((41.3, 51.1, -5.15, 9.6),),
    "ESP": ((36.0, 43.8, -9.3, 3.35),),
    "PRT": ((36.95, 42.15, -9.5, -6.2),),
    "DEU": ((47.25, 55.1, 5.85, 15.05),),
    "NLD": ((50.75, 53.55, 3.35, 7.25),),
    "BEL": ((49.5, 51.5, 2.55, 6.4),),
    "CHE": ((45.8, 47.8, 5.95, 10.5),),
    "AUT": ((46.35, 49.0, 9.5, 17.2),),
    "ITA": ((36.6, 47.1, 6.6, 18.55),),
    "POL": ((49.0, 54.85, 14.1, 24.15),),
    "CZE": ((48.55, 51.05, 12.1, 18.9),),
    "DNK": ((54.55, 57.75, 8.05, 15.2),),
    "NOR": ((57.95, 71.2, 4.6, 31.1),),
    "SWE": ((55.3, 69.1, 11.1, 24.2),),
    "FIN": ((59.8, 70.1, 20.55, 31.6),),
    "ROU": ((43.6, 48.3, 20.25, 29.7),),
    "GRC": ((34.8, 41.75, 19.35, 28.25),),
    "UKR": ((44.35, 52.4, 22.1, 40.2),),
    "TUR": ((35.8, 42.1, 25.65, 44.8),),
    "RUS": ((41.2, 81.9, 19.6, 180.0), (64.0, 72.0, -180.0, -169.0)),
    # Asia
    "IND": ((6.7, 35.5, 68.1, 97.4),),
    "NPL": ((26.35, 30.45, 80.05, 88.2),),
    "BTN": ((26.7, 28.3, 88.75, 92.15),),
    "BGD": ((20.6, 26.65, 88.0, 92.7),),
    "LKA": ((5.9, 9.85, 79.65, 81.9),),
    "PAK": ((23.7, 37.1, 60.9, 77.85),),
    "AFG": ((29.35, 38.5, 60.5, 74.9),),
    "IRN": ((25.05, 39.8, 44.0, 63.35),),
    "SAU": ((16.35, 32.15, 34.5, 55.7),),
    "ISR": ((29.45, 33.35, 34.25, 35.9),),
    "KAZ": ((40.55, 55.45, 46.5, 87.35),),
    "MNG": ((41.55, 52.15, 87.7, 119.95),),
    "CHN": ((18.15, 53.55, 73.5, 134.8),),
    "MMR": ((9.8, 28.55, 92.2, 101.2),),
    "THA": ((5.6, 20.5, 97.3, 105.65),),
    "LAO": ((13.9, 22.5, 100.1, 107.7),),
    "VNM": ((8.4, 23.4, 102.1, 109.5),),
    "KHM": ((10.4, 14.7, 102.3, 107.65),),
    "MYS": ((0.85, 7.4, 99.6, 119.3),),
    "IDN": ((-11.0, 6.1, 95.0, 141.05),),
    "PHL": ((4.6, 21.1, 116.9, 126.6),),
    "JPN": ((24.0, 45.55, 122.9, 145.8),),
    "KOR": ((33.1, 38.6, 124.6, 131.9),),
    # Oceania
    "PNG": ((-11.7, -1.3, 140.85, 156.0),),
    "AUS": ((-43.7, -10.0, 112.9, 153.7),),
    "NZL": ((-47.35, -34.35, 166.4, 178.6),),
}

# USA admin1 (the only admin1 geofencing uses): the states and DC, USPS codes.
US_STATES = frozenset(
    [
        "AL",
        "AK",
        "AZ",
        "AR",
        "CA",
        "CO",
        "CT",
        "DE",
        "DC",
        "FL",
        "GA",
        "HI",
        "ID",
        "IL",
        "IN",
        "IA",
        "KS",
        "KY",
        "LA",
        "ME",
        "MD",
        "MA",
        "MI",
        "MN",
        "MS",
        "MO",
        "MT",
        "NE",
        "NV",
        "NH",
        "NJ",
        "NM",
        "NY",
        "NC",
        "ND",
        "OH",
        "OK",
        "OR",
        "PA",
        "RI",
        "SC",
        "SD",
        "TN",
        "TX",
        "UT",
        "VT",
        "VA",
        "WA",
        "WV",
        "WI",
        "WY",
    ]
)


def _area(box: tuple[float, float, float, float]) -> float:
    south, north, west, east = box
    return (north - south) * (east - west)


def countries_at(latitude: float, longitude: float) -> list[str]:
    """Candidate countries whose box holds the point, most specific (smallest box) first."""
    hits: list[tuple[float, str]] = []
    for code, boxes in BOXES.items():
        inside = [b for b in boxes if b[0] <= latitude <= b[1] and b[2] <= longitude <= b[3]]
        if inside:
            hits.append((min(_area(b) for b in inside), code))
    return [code for _, code in sorted(hits)]


def check_us_state(code: str) -> str:
    code = code.strip().upper()
    if code not in US_STATES:
        raise ValueError(f"unknown US state code {code!r} (two letters, e.g. CA)")
    return code


# The system's tz database (Debian's tzdata): one line per zone with its principal city;
# zone.tab has a line per country and zone, so more cities to be near than zone1970.tab.
ZONE_TABS = (Path("/usr/share/zoneinfo/zone.tab"), Path("/usr/share/zoneinfo/zone1970.tab"))


@dataclass(frozen=True)
class ZoneGuess:
    """A proposed time zone and how it was found (said to the technician, who confirms it)."""

    zone: str
    how: str


def timezone_at(latitude: float, longitude: float) -> ZoneGuess | None:
    """The IANA time zone at a point, to propose; None when nothing can be said.

    With ``tzfpy`` installed (optional: ``pip install camtrap[provision]``) the answer comes
    from the zone boundary polygons and is right to within a few hundred metres of a border.
    Without it, the fallback is the zone whose principal city (the system's zone1970.tab) is
    nearest: right in most of the field, wrong near a zone border, which is why the technician
    always confirms the answer.
    """
    get_tz: Callable[[float, float], str] | None
    try:
        from tzfpy import get_tz
    except ImportError:
        get_tz = None
    if get_tz is not None:
        zone = get_tz(longitude, latitude)
        if zone and _is_zone(zone):
            return ZoneGuess(zone, "from the location (time zone boundaries)")
    nearest = _nearest_zone_city(latitude, longitude)
    if nearest is None:
        return None
    zone, km = nearest
    return ZoneGuess(zone, f"nearest time zone city, {km:.0f} km away (rough near a border)")


def _is_zone(name: str) -> bool:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _dms(text: str) -> float:
    """ISO 6709 from zone1970.tab, sign then DDMM[SS] or DDDMM[SS], as decimal degrees."""
    sign = -1.0 if text[0] == "-" else 1.0
    digits = text[1:]
    deg_len = len(digits) - (4 if len(digits) in (6, 7) else 2)
    deg = int(digits[:deg_len])
    minutes = int(digits[deg_len : deg_len + 2])
    seconds = int(digits[deg_len + 2 :] or 0)
    return sign * (deg + minutes / 60 + seconds / 3600)


@cache
def _zone_cities() -> tuple[tuple[float, float, str], ...]:
    for tab in ZONE_TABS:
        try:
            text = tab.read_text(encoding="utf-8")
        except OSError:
            continue
        return _parse_zone_tab(text)
    return ()


def _parse_zone_tab(text: str) -> tuple[tuple[float, float, str], ...]:
    cities = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) < 3:
            continue
        coords = fields[1]
        cut = max(coords.rfind("+"), coords.rfind("-"))
        try:
            lat, lon = _dms(coords[:cut]), _dms(coords[cut:])
        except (ValueError, IndexError):
            continue
        if _is_zone(fields[2]):
            cities.append((lat, lon, fields[2]))
    return tuple(cities)


def _nearest_zone_city(latitude: float, longitude: float) -> tuple[str, float] | None:
    best: tuple[float, str] | None = None
    for lat, lon, zone in _zone_cities():
        km = _distance_km(latitude, longitude, lat, lon)
        if best is None or km < best[0]:
            best = (km, zone)
    return None if best is None else (best[1], best[0])


def _distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(min(1.0, math.sqrt(a)))
