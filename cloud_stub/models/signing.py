"""Sign a pack's manifest in place, or re-sign a copy of a pack as a new version.

A pack is signed only once it verifies as the device would load it (``read_pack``: the shared
``Manifest`` rules, every checksum, the expiry), so what the cloud signs and what a trap
accepts are checked by the same code.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cloud_stub.models.keys import load_private_key, new_keypair
from device.contracts.durable import atomic_write
from device.contracts.manifest import Manifest, PackError
from device.contracts.pack import DEFAULT_PACK_DIR, read_pack
from device.contracts.protocol import Observation, Telemetry
from device.contracts.signing import sign_manifest
from device.contracts.versions import parse_version

DEFAULT_EXPIRY_DAYS = 30


def _read_manifest(pack_dir: Path) -> dict[str, Any]:
    return json.loads((pack_dir / "manifest.json").read_text())


def sign_pack(
    pack_dir: Path,
    key_path: Path,
    *,
    version: str | None = None,
    expires_in: timedelta | None = None,
) -> dict[str, Any]:
    """Set ``signature`` (and optionally a new ``version`` and ``expires``) in
    ``pack_dir/manifest.json``. The pack must verify first: only checked files get signed."""
    pack_dir = Path(pack_dir)
    if not pack_dir.is_dir():
        raise PackError(f"{pack_dir}: sign a pack directory (not a tar)")
    key = load_private_key(key_path)
    manifest = _read_manifest(pack_dir)
    manifest["signature"] = None
    if version is not None:
        parse_version(version)
        manifest["version"] = version
    if expires_in is not None:
        manifest["expires"] = (datetime.now(UTC) + expires_in).replace(microsecond=0).isoformat()
    if not manifest.get("expires"):
        raise PackError(f"{pack_dir}: a signed manifest needs an expiry time (--expires-days)")
    manifest["created"] = datetime.now(UTC).replace(microsecond=0).isoformat()
    # Write unsigned first and verify (checksums, expiry) before the signature goes on.
    _write_manifest(pack_dir, manifest)
    _fits_the_wire(read_pack(pack_dir).manifest)
    signed = sign_manifest(manifest, key)
    _write_manifest(pack_dir, signed)
    return signed


def _max_length(model: type[Observation] | type[Telemetry], name: str) -> int:
    limits = [getattr(m, "max_length", None) for m in model.model_fields[name].metadata]
    return min(n for n in limits if isinstance(n, int))


def _fits_the_wire(manifest: Manifest) -> None:
    """Every observation a trap makes with this pack carries ``classified_by``, and every
    heartbeat carries it as ``model_version``; a head names its backbone there too, so long
    names could make a pack whose observations the protocol refuses. Refused here, at signing."""
    text = manifest.classified_by
    limit = min(_max_length(Observation, "classified_by"), _max_length(Telemetry, "model_version"))
    if len(text) > limit:
        raise PackError(
            f"{text!r} is {len(text)} characters: observations carry at most {limit}"
            " (shorten the pack's or its backbone's name)"
        )


def _write_manifest(pack_dir: Path, manifest: dict[str, Any]) -> None:
    atomic_write(pack_dir / "manifest.json", (json.dumps(manifest, indent=2) + "\n").encode())


def resign_pack(
    source: Path,
    dest: Path,
    version: str,
    key_path: Path,
    expires_in: timedelta = timedelta(days=DEFAULT_EXPIRY_DAYS),
) -> Path:
    """Copy ``source`` to ``dest`` (must not exist) and sign the copy as ``version``."""
    if dest.exists():
        raise PackError(f"{dest}: exists")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".resign-", dir=dest.parent))
    try:
        shutil.copytree(source, tmp, dirs_exist_ok=True)
        sign_pack(tmp, key_path, version=version, expires_in=expires_in)
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def resign_default_pack(version: str, out_dir: Path) -> tuple[Path, Path]:
    """The demo's update: the bundled default pack re-signed as ``version`` with a fresh key.

    Makes ``out_dir/keys/camtrap-models.{key,pub}`` and ``out_dir/<name>@<version>/``;
    returns (pack dir, public key path). Give the device the .pub (``ota.trusted_keys``).
    """
    key_path, pub_path = new_keypair(out_dir / "keys")
    name = _read_manifest(DEFAULT_PACK_DIR)["name"]
    pack = resign_pack(DEFAULT_PACK_DIR, out_dir / f"{name}@{version}", version, key_path)
    return pack, pub_path
