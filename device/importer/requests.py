"""An import asked of the running agent: a request file in the data dir.

The database has one writer. While the agent runs, ``camtrap import`` does not open it for
writing: it leaves ``.import-requests/<import id>.json`` and watches the import's row
read-only; the agent's import room runs the import under that id and removes the file, once
run, whatever the run did. The file is written atomically, so the agent never reads half a
request.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

from device.contracts.durable import atomic_write
from device.importer.engine import ImportRequest

log = logging.getLogger("camtrap.import")

REQUEST_DIR = ".import-requests"


def write_request(data_dir: Path, request: ImportRequest) -> Path:
    assert request.import_id is not None
    directory = data_dir / REQUEST_DIR
    directory.mkdir(exist_ok=True)
    body = asdict(request)
    body["source"] = str(request.source.resolve())
    return atomic_write(directory / f"{request.import_id}.json", json.dumps(body).encode())


def pending_requests(data_dir: Path) -> list[tuple[Path, ImportRequest | None]]:
    """Every request file, oldest first, with its request (None: unreadable, to be dropped)."""
    directory = data_dir / REQUEST_DIR
    if not directory.is_dir():
        return []
    found: list[tuple[Path, ImportRequest | None]] = []
    for path in sorted(directory.glob("*.json"), key=_age):
        try:
            body = json.loads(path.read_bytes())
            body["source"] = Path(body["source"])
            found.append((path, ImportRequest(**body)))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.error("import request %s is unreadable (%s); dropped", path, exc)
            found.append((path, None))
    return found


def _age(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
