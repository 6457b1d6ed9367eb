"""Validate a Camtrap DP 1.0.2 package with ``frictionless``, offline.

A package names its profile and table schemas by URL, and frictionless fetches them. Here every
fetch goes through an HTTP adapter that answers only the URLs we can serve from disk (the
vendored schemas in ``schemas/``, or another copy such as ``../shared/camtrap-dp-1.0.2``) and
refuses the rest, so validation never depends on the network and never silently skips a schema.

The Camtrap DP profile ``$ref``s two schemas we do not vendor:

- the Data Package v1 JSON schema: frictionless itself checks a descriptor against the Data
  Package rules (``Package.metadata_profile`` and its own checks) before applying a custom
  profile, so that URL is answered with a minimal schema of ours that only asks for
  ``resources``;
- the GeoJSON schema (for ``spatial``): answered with the GeoJSON profile frictionless ships.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_DIR = Path(__file__).parent / "schemas"
CAMTRAP_BASE = "https://raw.githubusercontent.com/tdwg/camtrap-dp/1.0.2/"
SCHEMA_FILES = (
    "camtrap-dp-profile.json",
    "deployments-table-schema.json",
    "media-table-schema.json",
    "observations-table-schema.json",
)
PROFILE_URL = CAMTRAP_BASE + "camtrap-dp-profile.json"
DATA_PACKAGE_URL = "https://specs.frictionlessdata.io/schemas/data-package.json"
GEOJSON_URL = "http://json.schemastore.org/geojson.json"
_DATA_PACKAGE_MINIMAL = {"type": "object", "required": ["resources"]}


def table_schema_url(table: str) -> str:
    return f"{CAMTRAP_BASE}{table}-table-schema.json"


def load_table_schema(table: str, schema_dir: Path = SCHEMA_DIR) -> dict[str, Any]:
    return json.loads((schema_dir / f"{table}-table-schema.json").read_text(encoding="utf-8"))


def url_map(schema_dir: Path = SCHEMA_DIR) -> dict[str, bytes]:
    """The bytes to answer for each URL a Camtrap DP 1.0.2 validation may fetch."""
    import frictionless

    geojson = Path(frictionless.__file__).parent / "assets" / "profiles" / "geojson.json"
    served = {CAMTRAP_BASE + name: (schema_dir / name).read_bytes() for name in SCHEMA_FILES}
    served[DATA_PACKAGE_URL] = json.dumps(_DATA_PACKAGE_MINIMAL).encode()
    served[GEOJSON_URL] = geojson.read_bytes()
    # The same documents are also reachable over https / without the trailing fragment.
    served[GEOJSON_URL.replace("http://", "https://")] = served[GEOJSON_URL]
    return served


def _offline_session(served: dict[str, bytes]) -> Any:
    import requests
    from requests.adapters import BaseAdapter
    from requests.models import PreparedRequest

    class _Raw(io.BytesIO):
        decode_content = True  # frictionless sets this attribute on urllib3's raw stream

    class LocalOnly(BaseAdapter):
        # Streaming, timeouts, TLS and proxies mean nothing to files served from memory.
        def send(self, request: PreparedRequest, *_: Any, **__: Any) -> requests.Response:
            url = (request.url or "").split("#", 1)[0]
            if url not in served:
                raise requests.ConnectionError(
                    f"offline validation: no local copy of {url} (only the Camtrap DP 1.0.2 "
                    "schemas are served)"
                )
            response = requests.Response()
            response.status_code = 200
            response.url = url
            response.raw = _Raw(served[url])
            response.request = request
            return response

        def close(self) -> None:
            pass

    session = requests.Session()
    session.mount("http://", LocalOnly())
    session.mount("https://", LocalOnly())
    return session


@dataclass
class Validation:
    valid: bool
    errors: list[str] = field(default_factory=list)

    def summary(self, limit: int = 20) -> str:
        if self.valid:
            return "valid Camtrap DP 1.0.2 package"
        shown = "\n".join(f"  - {e}" for e in self.errors[:limit])
        more = len(self.errors) - limit
        return f"{len(self.errors)} problem(s):\n{shown}" + (
            f"\n  ... {more} more" if more > 0 else ""
        )


def validate_package(descriptor: Path, schema_dir: Path = SCHEMA_DIR) -> Validation:
    """Validate ``datapackage.json`` (profile, schemas, every row, foreign keys), offline."""
    import frictionless
    from frictionless import system

    session = _offline_session(url_map(schema_dir))
    # trusted: the descriptor is ours or a test's, and its CSVs sit next to it.
    with system.use_context(http_session=session, trusted=True):
        try:
            report = frictionless.validate(str(descriptor))
        except frictionless.FrictionlessException as exc:
            return Validation(False, [str(exc.error.message)])
    errors: list[str] = []
    for task in report.tasks:
        for error in task.errors:
            errors.append(f"{task.name or task.place}: {error.message}")
    errors.extend(str(e.message) for e in report.errors)
    return Validation(report.valid, errors)
