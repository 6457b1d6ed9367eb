"""Model packs (formats ``camtrap-model-pack/1`` and ``/2``, docs/model-pack.md): read,
verify, write.

A pack is a directory or a tar. Every file the pack uses must be listed in the manifest's
``files`` with its sha256 (and size), and must match, before anything is parsed: a model file
that was not verified is never handed to an interpreter. Tars are read into memory member by
member (never extracted), refusing absolute paths, ``..``, links and special files.

This is the format both ends share: the cloud reads a pack to sign it and to offer its taxa for
review; the device builds its serving engine from what ``read_pack`` returns
(device/vision/pack.py).
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, cast

from device.contracts.hashing import sha256_hex
from device.contracts.manifest import (
    FORMAT,
    FORMAT_V2,
    LABEL_FORMATS,
    Manifest,
    PackError,
    safe_name,
)
from device.contracts.taxa import LabelKind, Taxon, guess_kind

if TYPE_CHECKING:
    from device.contracts.head import HeadWeights

__all__ = [
    "DEFAULT_PACK_DIR",
    "MAX_PACK_BYTES",
    "PackContents",
    "PackSource",
    "file_entry",
    "parse_labels",
    "read_pack",
    "verify_files",
    "write_pack",
]

# The pack the agent ships with (the Debian package installs it with the code).
DEFAULT_PACK_DIR = Path(__file__).resolve().parent.parent / "models" / "efficientnet-lite0-imagenet"
MAX_PACK_BYTES = 512 * 1024 * 1024


class PackSource:
    """Read files of a pack by their name inside the pack."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._root: Path | None = None
        self._members: dict[str, bytes] | None = None
        if path.is_dir():
            self._root = path
        elif path.is_file() and tarfile.is_tarfile(path):
            self._members = _read_tar(path)
        elif path.exists():
            raise PackError("neither a directory nor a tar file")
        else:
            raise PackError("no such file or directory")

    def read(self, name: str) -> bytes:
        name = safe_name(name)
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
                name = safe_name(info.name)
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
class PackContents:
    """A verified pack: its manifest (as written, and as the model reads it) and every listed
    file's bytes, checked against the manifest; labels and taxa parsed."""

    path: Path
    document: dict[str, Any]  # manifest.json as written: what a signature covers
    manifest: Manifest
    files: dict[str, bytes]
    labels: list[tuple[str, str]]  # (label id, display name) per class, in order ([]: backbone)
    taxa: list[Taxon]  # one per label, same order
    geofence: dict[str, Any]
    head: HeadWeights | None = None  # a head pack's weights, checked against its manifest

    @property
    def kind(self) -> str:
        return self.manifest.kind


def verify_files(source: PackSource, manifest: Manifest) -> dict[str, bytes]:
    """Every listed file, checked against its size and sha256."""
    out: dict[str, bytes] = {}
    for name, entry in manifest.files.items():
        data = source.read(name)
        if entry.size is not None and len(data) != entry.size:
            raise PackError(f"{name}: size {len(data)} != {entry.size} in the manifest")
        digest = sha256_hex(data)
        if digest != entry.sha256:
            raise PackError(f"{name}: checksum mismatch (sha256 {digest[:12]}…)")
        out[name] = data
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
            try:
                taxa.append(Taxon.from_entry(label_id, entry))
            except ValueError as exc:
                raise PackError(str(exc)) from None
        elif fmt == "speciesnet":
            taxa.append(Taxon.from_speciesnet(label_id))
        elif taxonomy:
            raise PackError(f"taxonomy: no entry for label {label_id!r}")
        else:
            taxa.append(Taxon(label=label_id, kind=guess_kind(display), common_name=display))
    return taxa


def read_pack(
    path: Path, agent_version: str | None = None, now: datetime | None = None
) -> PackContents:
    """Read and verify a pack; any problem raises ``PackError`` naming the pack.

    With ``agent_version``, a pack that needs a newer agent is refused; an expired pack always
    is (``now`` defaults to the clock).
    """
    try:
        return _read(Path(path), agent_version, now)
    except PackError as exc:
        raise PackError(f"model pack {path}: {exc}") from None


def _read(path: Path, agent_version: str | None, now: datetime | None) -> PackContents:
    source = PackSource(path)
    try:
        document = json.loads(source.read("manifest.json"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PackError(f"manifest.json is not valid JSON ({exc})") from exc
    manifest = Manifest.from_document(document)
    if agent_version:
        manifest.check_agent(agent_version)
    manifest.check_expiry(now)
    files = verify_files(source, manifest)
    spec = manifest.labels
    try:
        labels = parse_labels(files[spec.file].decode("utf-8"), spec.format) if spec else []
        taxonomy = json.loads(files[manifest.taxonomy.file]) if manifest.taxonomy else None
        geofence = json.loads(files[manifest.geofence.file]) if manifest.geofence else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PackError(f"labels, taxonomy or geofence unreadable ({exc})") from exc
    if not isinstance(geofence, dict):
        raise PackError("geofence: must be a JSON object keyed by taxonomy")
    taxa = _taxa(labels, spec.format, taxonomy) if spec else []
    head = _head(manifest, files, labels)
    if head is not None and manifest.head is not None:
        # The head says what each class is evidence of; that beats a guess from its name.
        taxa = [
            replace(t, kind=cast(LabelKind, k))
            for t, k in zip(taxa, manifest.head.kinds, strict=True)
        ]
    return PackContents(
        path=path,
        document=document,
        manifest=manifest,
        files=files,
        labels=labels,
        taxa=taxa,
        geofence=geofence,
        head=head,
    )


def _head(
    manifest: Manifest, files: dict[str, bytes], labels: list[tuple[str, str]]
) -> HeadWeights | None:
    spec, backbone = manifest.head, manifest.backbone
    if spec is None or backbone is None:
        return None
    if len(spec.kinds) != len(labels):
        raise PackError(f"head.kinds has {len(spec.kinds)} entries for {len(labels)} labels")
    # numpy only once a head is read: the settings import this module for DEFAULT_PACK_DIR,
    # and the Debian build renders the conffile from them without numpy installed.
    from device.contracts.head import HeadWeights

    return HeadWeights.from_bytes(
        files[spec.file], spec.weights, len(labels), backbone.embedding_size
    )


def file_entry(data: bytes) -> dict[str, Any]:
    return {"sha256": sha256_hex(data), "size": len(data)}


def write_pack(out_dir: Path, manifest: dict[str, Any], files: Mapping[str, bytes]) -> Path:
    """Write ``files`` and a manifest listing their checksums; the pack is read back to check.

    The caller's manifest supplies everything but ``format`` and ``files``: a full pack is
    written as format 1 (every agent reads it), a backbone or a head as format 2. The
    directory must not exist yet or be empty; nothing is left behind if the pack does not
    verify.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise PackError(f"{out_dir}: exists and is not empty")
    full = {
        "format": FORMAT if manifest.get("kind", "full") == "full" else FORMAT_V2,
        **manifest,
        "files": {safe_name(n): file_entry(b) for n, b in sorted(files.items())},
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
        read_pack(staging)
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir
