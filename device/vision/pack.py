"""Model packs (format ``camtrap-model-pack/1``, see docs/model-pack.md): read and verify.

A pack is a directory or a tar. Every file the pack uses must be listed in the manifest's
``files`` with its size and sha256, and must match, before anything is parsed: a model file
that was not verified is never handed to the interpreter. Tars are read into memory member by
member (never extracted), refusing absolute paths, ``..``, links and special files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from device.vision.preprocess import RESIZE_MODES
from device.vision.taxa import Taxon, guess_kind

FORMAT = "camtrap-model-pack/1"
LABEL_FORMATS = ("plain", "imagenet_wnid_tab_name", "speciesnet")
MAX_PACK_BYTES = 512 * 1024 * 1024
DEFAULT_THRESHOLDS = {"species": 0.65, "rollup": 0.65, "blank": 0.95, "animal": 0.2}


class PackError(ValueError):
    """A pack that cannot be used; the message is one line naming the pack and the reason."""


def _safe_name(name: str) -> str:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not name or "\\" in name:
        raise PackError(f"unsafe file name {name!r}")
    return str(path)


class _Source:
    """Read files of a pack by their name inside the pack."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._members: dict[str, bytes] | None = None
        if path.is_dir():
            self._root: Path | None = path
        elif path.is_file() and tarfile.is_tarfile(path):
            self._root = None
            self._members = _read_tar(path)
        elif path.exists():
            raise PackError("neither a directory nor a tar file")
        else:
            raise PackError("no such file or directory")

    def read(self, name: str) -> bytes:
        name = _safe_name(name)
        if self._members is not None:
            if name not in self._members:
                raise PackError(f"{name}: missing from the pack")
            return self._members[name]
        assert self._root is not None
        target = self._root / name
        if target.is_symlink() or not target.is_file():
            raise PackError(f"{name}: missing from the pack (or not a regular file)")
        return target.read_bytes()


def _read_tar(path: Path) -> dict[str, bytes]:
    members: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(path) as tar:
            for info in tar:
                if info.isdir():
                    continue
                name = _safe_name(info.name)
                if not info.isreg():
                    raise PackError(f"{info.name}: links and special files are not allowed")
                total += info.size
                if total > MAX_PACK_BYTES:
                    raise PackError(f"more than {MAX_PACK_BYTES} bytes unpacked")
                fh = tar.extractfile(info)
                assert fh is not None
                members[name] = fh.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise PackError(f"unreadable tar ({exc})") from exc
    if "manifest.json" not in members:
        # Accept a tar of the pack directory itself: one top-level folder.
        tops = {PurePosixPath(n).parts[0] for n in members}
        if len(tops) == 1:
            prefix = next(iter(tops)) + "/"
            members = {n[len(prefix) :]: b for n, b in members.items() if n.startswith(prefix)}
    return members


@dataclass(frozen=True)
class Golden:
    name: str
    content: bytes
    expect_top: tuple[str, ...]
    top_k: int


@dataclass
class ModelPack:
    """A verified pack, fully in memory: loading it again is not needed to serve."""

    path: Path
    manifest: dict[str, Any]
    name: str
    version: str
    model_content: bytes
    labels: list[str]  # label ids in output order
    display_names: list[str]  # human-readable label, same order
    taxa: list[Taxon]  # one per label, same order
    geofence: dict[str, Any]
    thresholds: dict[str, float]
    resize: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    output: str  # probabilities | logits
    golden: list[Golden] = field(default_factory=list)

    @property
    def classified_by(self) -> str:
        return f"{self.name}@{self.version}"


def _require(mapping: Mapping[str, Any], key: str, kind: type, where: str = "manifest") -> Any:
    value = mapping.get(key)
    if not isinstance(value, kind):
        raise PackError(f"{where}: {key!r} missing or not a {kind.__name__}")
    return value


def _version_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split("+")[0].split("-")[0].split("."))
    except ValueError as exc:
        raise PackError(f"version {text!r} is not dotted numbers") from exc


def verify_files(source: _Source, files: Mapping[str, Any]) -> dict[str, bytes]:
    """Every listed file, checked against its size and sha256."""
    out: dict[str, bytes] = {}
    for name, meta in files.items():
        if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str):
            raise PackError(f"manifest: files[{name!r}] needs a sha256")
        data = source.read(name)
        if "size" in meta and len(data) != meta["size"]:
            raise PackError(f"{name}: size {len(data)} != {meta['size']} in the manifest")
        digest = hashlib.sha256(data).hexdigest()
        if digest != meta["sha256"].lower():
            raise PackError(f"{name}: checksum mismatch (sha256 {digest[:12]}…)")
        out[_safe_name(name)] = data
    return out


def parse_labels(text: str, fmt: str) -> list[tuple[str, str]]:
    """(label id, display name) per output, in output order."""
    lines = [line.rstrip("\r") for line in text.split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    out = []
    for n, line in enumerate(lines, 1):
        if fmt == "plain":
            out.append((line.strip(), line.strip()))
        elif fmt == "imagenet_wnid_tab_name":
            wnid, sep, name = line.partition("\t")
            if not sep:
                raise PackError(f"labels line {n}: expected 'wnid<TAB>name'")
            out.append((wnid.strip(), name.strip()))
        elif fmt == "speciesnet":
            parts = line.split(";")
            if len(parts) != 7:
                raise PackError(f"labels line {n}: expected 7 ';'-separated fields")
            out.append((line.strip(), parts[6].strip() or ";".join(parts[1:6])))
        else:
            raise PackError(f"labels format {fmt!r} unknown (one of {', '.join(LABEL_FORMATS)})")
    return out


def _taxa(labels: list[tuple[str, str]], fmt: str, taxonomy: Any) -> list[Taxon]:
    entries: dict[str, dict[str, Any]] = {}
    if isinstance(taxonomy, dict):
        taxonomy = [{"label": k, **v} for k, v in taxonomy.items()]
    for entry in taxonomy or []:
        if not isinstance(entry, dict) or "label" not in entry:
            raise PackError("taxonomy: every entry needs a 'label'")
        entries[str(entry["label"])] = entry
    taxa = []
    for label_id, display in labels:
        entry = entries.get(label_id) or entries.get(display)
        if entry is not None:
            taxa.append(Taxon.from_entry(label_id, entry))
        elif fmt == "speciesnet":
            taxa.append(Taxon.from_speciesnet(label_id))
        elif taxonomy:
            raise PackError(f"taxonomy: no entry for label {label_id!r}")
        else:
            taxa.append(Taxon(label=label_id, kind=guess_kind(display), common_name=display))
    return taxa


def _triple(value: Any, what: str) -> tuple[float, float, float]:
    if isinstance(value, int | float):
        value = [value] * 3
    if not isinstance(value, list) or len(value) != 3:
        raise PackError(f"manifest: preprocess {what} must be a number or 3 numbers")
    return (float(value[0]), float(value[1]), float(value[2]))


def load_pack(path: Path, agent_version: str | None = None) -> ModelPack:
    """Read and verify a pack; any problem raises ``PackError`` naming the pack."""
    try:
        return _load(Path(path), agent_version)
    except PackError as exc:
        raise PackError(f"model pack {path}: {exc}") from None


def _load(path: Path, agent_version: str | None) -> ModelPack:
    source = _Source(path)
    try:
        manifest = json.loads(source.read("manifest.json"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PackError(f"manifest.json is not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise PackError(f"manifest format is not {FORMAT!r}")
    name = _require(manifest, "name", str)
    version = _require(manifest, "version", str)
    _version_tuple(version)
    if agent_version and manifest.get("min_agent_version"):
        needed = str(manifest["min_agent_version"])
        if _version_tuple(agent_version) < _version_tuple(needed):
            raise PackError(f"needs agent {needed} or newer, this is {agent_version}")
    if manifest.get("expires"):
        try:
            expires = datetime.fromisoformat(str(manifest["expires"]))
        except ValueError as exc:
            raise PackError(f"expires {manifest['expires']!r} is not ISO 8601") from exc
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=UTC)
        if expires < datetime.now(UTC):
            raise PackError(f"expired at {manifest['expires']}")

    model = _require(manifest, "model", dict)
    labels_spec = _require(manifest, "labels", dict)
    referenced = [
        _require(model, "file", str, "manifest model"),
        _require(labels_spec, "file", str),
    ]
    for key in ("taxonomy", "geofence"):
        if manifest.get(key):
            referenced.append(_require(manifest[key], "file", str, f"manifest {key}"))
    golden_specs = manifest.get("golden") or []
    referenced += [_require(g, "file", str, "manifest golden") for g in golden_specs]

    files = _require(manifest, "files", dict)
    unlisted = [n for n in referenced if n not in files]
    if unlisted:
        raise PackError(f"{unlisted[0]} is used but has no checksum in manifest files")
    data = verify_files(source, files)

    fmt = labels_spec.get("format", "plain")
    try:
        labels = parse_labels(data[labels_spec["file"]].decode("utf-8"), fmt)
        taxonomy = (
            json.loads(data[manifest["taxonomy"]["file"]]) if manifest.get("taxonomy") else None
        )
        geofence = (
            json.loads(data[manifest["geofence"]["file"]]) if manifest.get("geofence") else {}
        )
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PackError(f"labels, taxonomy or geofence unreadable ({exc})") from exc
    if not isinstance(geofence, dict):
        raise PackError("geofence: must be a JSON object keyed by taxonomy")

    pre = model.get("preprocess") or {}
    resize = pre.get("resize", "center_crop")
    if resize not in RESIZE_MODES:
        raise PackError(f"preprocess resize {resize!r} unknown (one of {', '.join(RESIZE_MODES)})")
    output = model.get("output", "probabilities")
    if output not in ("probabilities", "logits"):
        raise PackError(f"model output {output!r} must be 'probabilities' or 'logits'")
    thresholds = dict(DEFAULT_THRESHOLDS)
    for key, value in (manifest.get("thresholds") or {}).items():
        if not isinstance(value, int | float) or not 0 <= value <= 1:
            raise PackError(f"threshold {key!r} must be a number in [0, 1]")
        thresholds[key] = float(value)

    golden = [
        Golden(
            name=g["file"],
            content=data[g["file"]],
            expect_top=tuple(g.get("expect_top") or ()),
            top_k=int(g.get("top_k", 5)),
        )
        for g in golden_specs
    ]
    return ModelPack(
        path=path,
        manifest=manifest,
        name=name,
        version=version,
        model_content=data[model["file"]],
        labels=[label_id for label_id, _ in labels],
        display_names=[display for _, display in labels],
        taxa=_taxa(labels, fmt, taxonomy),
        geofence=geofence,
        thresholds=thresholds,
        resize=resize,
        mean=_triple(pre.get("mean", 127.5), "mean"),
        std=_triple(pre.get("std", 127.5), "std"),
        output=output,
        golden=golden,
    )


def file_entry(data: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def write_pack(out_dir: Path, manifest: dict[str, Any], files: Mapping[str, bytes]) -> Path:
    """Write ``files`` and a manifest listing their checksums; the pack is read back to check.

    The caller's manifest supplies everything but ``format`` and ``files``. The directory must
    not exist yet or be empty; nothing is left behind if the pack does not verify.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise PackError(f"{out_dir}: exists and is not empty")
    full = {
        "format": FORMAT,
        **manifest,
        "files": {_safe_name(n): file_entry(b) for n, b in sorted(files.items())},
    }
    full.setdefault("signature", None)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".pack-", dir=out_dir.parent))
    try:
        for name, data in files.items():
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        (staging / "manifest.json").write_text(json.dumps(full, indent=2) + "\n")
        load_pack(staging)
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir
