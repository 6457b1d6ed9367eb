"""The package-level properties Camtrap DP requires, derived from the rows being exported."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from device.contracts.release import VERSION

SAMPLING_DESIGNS = (
    "simpleRandom",
    "systematicRandom",
    "clusteredRandom",
    "experimental",
    "targeted",
    "opportunistic",
)
CONTRIBUTOR_ROLES = ("contact", "principalInvestigator", "rightsHolder", "publisher", "contributor")
_RANKS = ("class", "order", "family", "genus")


@dataclass
class ProjectInfo:
    """What only people know about the project; the command line fills it."""

    title: str = "camtrap camera-trap project"
    sampling_design: str = "opportunistic"
    contributors: list[dict[str, str]] = field(
        default_factory=lambda: [{"title": "camtrap operator", "role": "contact"}]
    )
    individual_animals: bool = False
    data_license: str | None = None  # e.g. CC0-1.0 (Camtrap DP wants both or none)
    media_license: str | None = None  # e.g. CC-BY-4.0
    description: str | None = None


def _spatial(deployments: Sequence[dict[str, Any]]) -> dict[str, Any]:
    lats = [float(d["latitude"]) for d in deployments]
    lons = [float(d["longitude"]) for d in deployments]
    west, east, south, north = min(lons), max(lons), min(lats), max(lats)
    if west == east and south == north:
        return {"type": "Point", "coordinates": [west, south]}
    # A bounding box as GeoJSON: one closed ring, longitude first.
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {"type": "Polygon", "bbox": [west, south, east, north], "coordinates": [ring]}


def _temporal(deployments: Sequence[dict[str, Any]], media: Sequence[dict[str, Any]]) -> dict:
    stamps = [d["deploymentStart"] for d in deployments] + [d["deploymentEnd"] for d in deployments]
    stamps += [m["timestamp"] for m in media]
    moments = [datetime.fromisoformat(s) for s in stamps if s]
    # Calendar dates as the traps saw them (their own offsets), which is what people read.
    return {
        "start": min(moments).date().isoformat(),
        "end": max(moments).date().isoformat(),
    }


def taxonomic(observations: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per scientific name, with the higher ranks from the stored taxonomy string."""
    taxa: dict[str, dict[str, Any]] = {}
    for row in observations:
        name = row.get("scientific_name")
        if not name or name in taxa:
            continue
        entry: dict[str, Any] = {"scientificName": name}
        if row.get("taxon_level") in ("kingdom", "class", "order", "family", "genus", "species"):
            entry["taxonRank"] = row["taxon_level"]
        parts = (row.get("taxonomy") or "").split(";")
        if len(parts) == 5:  # class;order;family;genus;species (SpeciesNet style)
            for rank, value in zip(_RANKS, parts[:4], strict=True):
                if value:
                    entry[rank] = value.capitalize()
        if row.get("common_name"):
            entry["vernacularNames"] = {"eng": row["common_name"]}
        taxa[name] = entry
    return sorted(taxa.values(), key=lambda t: t["scientificName"])


def package_properties(
    project: ProjectInfo,
    deployments: Sequence[dict[str, Any]],
    media: Sequence[dict[str, Any]],
    observations: Sequence[dict[str, Any]],
    observation_rows: Sequence[dict[str, Any]],
    notes: Sequence[str] = (),
    now: datetime | None = None,
) -> dict[str, Any]:
    created = (now or datetime.now(UTC)).replace(microsecond=0)
    methods = sorted({m["captureMethod"] for m in media if m.get("captureMethod")})
    levels = sorted({o["observationLevel"] for o in observations})
    description = project.description or (
        "Camera-trap data exported by the camtrap cloud stub. Machine observations come from "
        "the traps' on-device classifier; human observations from review."
    )
    if notes:
        description += " Export notes: " + "; ".join(notes) + "."
    properties: dict[str, Any] = {
        "name": f"camtrap-export-{created:%Y%m%d-%H%M%S}",
        "id": str(uuid.uuid4()),
        "created": created.isoformat(),
        "title": project.title,
        "description": description,
        "contributors": project.contributors,
        "sources": [{"title": "camtrap", "version": VERSION}],
        "project": {
            "title": project.title,
            "samplingDesign": project.sampling_design,
            "captureMethod": methods or ["activityDetection"],
            "individualAnimals": project.individual_animals,
            "observationLevel": levels or ["media"],
        },
        "spatial": _spatial(deployments),
        "temporal": _temporal(deployments, media),
        "taxonomic": taxonomic(observation_rows),
    }
    if project.data_license and project.media_license:
        properties["licenses"] = [
            {"name": project.data_license, "scope": "data"},
            {"name": project.media_license, "scope": "media"},
        ]
    return properties
