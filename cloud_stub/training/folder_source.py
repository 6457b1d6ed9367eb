"""Labelled images from a folder: ``--images DIR --labels labels.csv``.

Two CSV shapes are read:

- a header row naming ``file`` and ``label`` (and optionally ``event``, ``deployment`` and an
  animal's ``taxonomy``, ``class;order;family;genus;species``; other columns are ignored),
  ``file`` relative to DIR;
- the hand-off's AutoML import CSV (``IMAGE_URI,LABEL``, no header; Vertex AI's optional
  leading ML_USE column is skipped). A URI (``gs://...`` or an absolute path) is matched to
  a file under DIR by the longest tail of its path that exists there: with DIR a copy of the
  hand-off's destination that is the image's path relative to the destination; at worst
  its base name, if only one file under DIR has it.

**Events.** Rows sharing an ``event`` value are one event. Without the column, photos of one
deployment (the ``deployment`` column, else the whole folder) are grouped by EXIF
DateTimeOriginal: sorted by time, a photo at most ``EVENT_GAP_S`` after the previous one
belongs to its event (the trap's ``vision.sequence_cutoff_s`` rule and default). A photo
without an EXIF time is an event of its own.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath

from cloud_stub.training.classes import TrainClass, class_of_label
from cloud_stub.training.errors import TrainingError
from cloud_stub.training.labelled import LabelledImage, LabelledSet
from device.contracts.photo_time import exif_taken_at

__all__ = ["EVENT_GAP_S", "folder_images"]

EVENT_GAP_S = 60.0
WHOLE_FOLDER = "(whole folder)"
ML_USES = {"training", "validation", "test", "unassigned"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


@dataclass
class _Row:
    line: int
    file: str
    label: str
    event: str | None
    deployment: str | None
    taxonomy: str | None = None


def _read_rows(labels: Path) -> tuple[list[_Row], str]:
    try:
        text = labels.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise TrainingError(f"{labels}: no such labels file") from None
    except UnicodeDecodeError:
        raise TrainingError(f"{labels}: not a UTF-8 CSV file") from None
    except OSError as exc:
        raise TrainingError(f"{labels}: cannot read ({exc.strerror or exc})") from None
    try:
        table = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    except csv.Error as exc:
        raise TrainingError(f"{labels}: not a CSV file ({exc})") from None
    if not table:
        raise TrainingError(f"{labels}: empty (no labelled rows)")
    header = [c.strip().lower() for c in table[0]]
    if "file" in header and "label" in header:
        return _with_header(labels, header, table[1:]), "labels.csv"
    return _automl(labels, table), "AutoML import CSV"


def _with_header(labels: Path, header: list[str], body: list[list[str]]) -> list[_Row]:
    at: dict[str, int] = {
        name: header.index(name)
        for name in ("file", "label", "event", "deployment", "taxonomy")
        if name in header
    }

    def cell(row: list[str], name: str) -> str | None:
        i = at.get(name)
        value = row[i].strip() if i is not None and i < len(row) else ""
        return value or None

    rows = []
    for n, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise TrainingError(
                f"{labels} line {n}: {len(row)} fields, the header has {len(header)}"
            )
        rows.append(
            _Row(
                n,
                cell(row, "file") or "",
                cell(row, "label") or "",
                cell(row, "event"),
                cell(row, "deployment"),
                cell(row, "taxonomy"),
            )
        )
    return rows


def _automl(labels: Path, table: list[list[str]]) -> list[_Row]:
    rows = []
    for n, row in enumerate(table, start=1):
        cells = [c.strip() for c in row]
        if len(cells) == 3 and cells[0].lower() in ML_USES:
            cells = cells[1:]
        if len(cells) != 2:
            raise TrainingError(
                f"{labels} line {n}: expected a header with file,label or AutoML's "
                f"IMAGE_URI,LABEL rows, got {len(row)} fields"
            )
        rows.append(_Row(n, cells[0], cells[1], None, None))
    return rows


class _Finder:
    """Files under DIR by the name a CSV row gives them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._by_name: dict[str, list[Path]] | None = None

    def relative(self, name: str) -> Path | None:
        path = PurePosixPath(name.replace("\\", "/"))
        if path.is_absolute() or ".." in path.parts:
            return None
        target = self.folder / path
        return target if target.is_file() else None

    def uri(self, uri: str) -> Path | None:
        parts = PurePosixPath(uri.removeprefix("gs://")).parts
        parts = parts[1:] if uri.startswith(("gs://", "/")) else parts  # bucket or root
        for start in range(len(parts)):
            target = self.folder.joinpath(*parts[start:])
            if target.is_file():
                return target
        found = self._names().get(parts[-1], []) if parts else []
        return found[0] if len(found) == 1 else None

    def _names(self) -> dict[str, list[Path]]:
        if self._by_name is None:
            self._by_name = {}
            for path in sorted(self.folder.rglob("*")):
                if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                    self._by_name.setdefault(path.name, []).append(path)
        return self._by_name


def _events_by_time(images: list[tuple[str, Path, str]]) -> dict[str, str]:
    """key -> event id, by the EXIF time gap within each deployment."""
    events: dict[str, str] = {}
    timed: list[tuple[str, datetime, str]] = []
    for key, path, deployment in images:
        when = exif_taken_at(path)
        if when is None:
            events[key] = f"{deployment}/{key}"
        else:
            timed.append((deployment, when, key))
    previous: tuple[str, datetime] | None = None
    current = ""
    for deployment, when, key in sorted(timed):
        if (
            previous is None
            or previous[0] != deployment
            or ((when - previous[1]).total_seconds() > EVENT_GAP_S)
        ):
            current = f"{deployment}/{key}"
        events[key] = current
        previous = (deployment, when)
    return events


def folder_images(folder: Path, labels: Path) -> LabelledSet:
    folder, labels = Path(folder), Path(labels)
    if not folder.is_dir():
        raise TrainingError(f"--images {folder}: not a directory")
    rows, shape = _read_rows(labels)
    finder = _Finder(folder)
    left_out: Counter[str] = Counter()
    chosen: dict[str, tuple[_Row, Path, TrainClass]] = {}
    ambiguous: set[str] = set()
    for row in rows:
        if not row.file:
            raise TrainingError(f"{labels} line {row.line}: no file named")
        if not row.label:
            left_out["row without a label"] += 1
            continue
        cls = class_of_label(row.label, row.taxonomy)
        if cls is None:
            left_out[f"machine-unusable label {row.label.strip().lower()!r}"] += 1
            continue
        is_uri = shape != "labels.csv" and (row.file.startswith(("gs://", "/")))
        path = finder.uri(row.file) if is_uri else finder.relative(row.file)
        if path is None:
            left_out["file named in the labels but not found under the folder"] += 1
            continue
        key = path.relative_to(folder).as_posix()
        if key in chosen and chosen[key][2].name != cls.name:
            ambiguous.add(key)
        chosen.setdefault(key, (row, path, cls))
    for key in ambiguous:
        del chosen[key]
    if ambiguous:
        left_out["file with two different labels (ambiguous)"] += len(ambiguous)
    if not chosen and left_out["file named in the labels but not found under the folder"]:
        raise TrainingError(f"{labels}: names {len(rows)} files and none of them is in {folder}")
    has_events = any(row.event for row, _, _ in chosen.values())
    if has_events:
        events = {k: row.event or f"(file)/{k}" for k, (row, _, _) in chosen.items()}
        rule = "the event column (rows without one are single-frame events)"
    else:
        events = _events_by_time(
            [(k, p, row.deployment or WHOLE_FOLDER) for k, (row, p, _) in chosen.items()]
        )
        rule = (
            f"EXIF DateTimeOriginal, gap <= {EVENT_GAP_S:g} s per deployment "
            "(photos without it are single-frame events)"
        )
    images = [
        LabelledImage(key, path, cls, events[key], row.deployment or WHOLE_FOLDER)
        for key, (row, path, cls) in sorted(chosen.items())
    ]
    return LabelledSet(
        images, f"folder {folder} ({shape} {labels.name})", folder.resolve().name, rule, left_out
    )
