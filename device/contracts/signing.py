"""Ed25519 signatures over a pack's manifest, and the device's trusted keys.

The signed bytes (the *canonical manifest*) are a fixed domain prefix followed by the
manifest as JSON with the ``signature`` key removed, keys sorted at every level, no
whitespace (``","`` and ``":"`` separators), UTF-8 without escaping non-ASCII, NaN and
infinities refused. The prefix stops a signature made for anything else (a config document,
another format) from ever verifying as a manifest signature.

The ``signature`` field::

    {"alg": "ed25519", "key_id": "<16 hex: sha256 of the raw public key>", "value": "<base64>"}

Only the key whose id is named is tried: a manifest cannot shop for a key that happens to fit.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from device.contracts.hashing import sha256_hex

__all__ = [
    "ALG",
    "DOMAIN",
    "SignatureError",
    "canonical_manifest",
    "key_id",
    "load_public_key",
    "raw_public",
    "sign_manifest",
    "trusted_keys",
    "verify_manifest",
]

DOMAIN = b"camtrap-model-pack/1 manifest\n"
ALG = "ed25519"


class SignatureError(ValueError):
    """The manifest is unsigned, signed by an unknown key, or the signature does not verify."""


def canonical_manifest(manifest: Mapping[str, Any]) -> bytes:
    body = {k: v for k, v in manifest.items() if k != "signature"}
    text = json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return DOMAIN + text.encode("utf-8")


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    return sha256_hex(raw_public(key))[:16]


def sign_manifest(manifest: Mapping[str, Any], private_key: Ed25519PrivateKey) -> dict[str, Any]:
    """A copy of ``manifest`` with its ``signature`` set."""
    value = private_key.sign(canonical_manifest(manifest))
    signed = dict(manifest)
    signed["signature"] = {
        "alg": ALG,
        "key_id": key_id(private_key.public_key()),
        "value": base64.b64encode(value).decode("ascii"),
    }
    return signed


def verify_manifest(manifest: Mapping[str, Any], trusted: Mapping[str, Ed25519PublicKey]) -> str:
    """The id of the trusted key that signed ``manifest``; anything else raises."""
    sig = manifest.get("signature")
    if not isinstance(sig, dict):
        raise SignatureError("manifest is not signed")
    if sig.get("alg") != ALG:
        raise SignatureError(f"signature algorithm {sig.get('alg')!r} is not {ALG}")
    kid = sig.get("key_id")
    if not isinstance(kid, str) or kid not in trusted:
        raise SignatureError(f"signed by key {kid!r}, which this device does not trust")
    key = trusted[kid]
    try:
        value = base64.b64decode(str(sig.get("value", "")), validate=True)
        key.verify(value, canonical_manifest(manifest))
    except (InvalidSignature, binascii.Error, ValueError) as exc:
        raise SignatureError(f"signature by key {kid} does not verify") from exc
    return kid


def load_public_key(spec: str | Path) -> Ed25519PublicKey:
    """A public key from a file (PEM, or base64 of the raw 32 bytes) or an inline base64 string."""
    text = str(spec).strip()
    path = Path(text)
    try:
        is_file = path.is_file()
    except OSError:
        is_file = False
    data = path.read_bytes() if is_file else text.encode()
    if b"-----BEGIN" in data:
        key = serialization.load_pem_public_key(data)
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"{spec}: not an Ed25519 public key")
        return key
    try:
        raw = base64.b64decode(data.strip(), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"{text[:60]}: neither a key file nor base64") from exc
    if len(raw) != 32:
        raise ValueError(f"{text[:60]}: an Ed25519 public key is 32 bytes, got {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def trusted_keys(
    specs: Iterable[str | Path], key_dirs: Iterable[Path] = ()
) -> dict[str, Ed25519PublicKey]:
    """Key id -> key, from config entries and every ``*.pub`` in ``key_dirs``.

    A key that cannot be read is an error, not a silent skip: a device must not end up
    trusting fewer keys than its operator thinks.
    """
    keys: dict[str, Ed25519PublicKey] = {}
    sources: list[str | Path] = list(specs)
    for directory in key_dirs:
        if directory.is_dir():
            sources += sorted(directory.glob("*.pub"))
    for spec in sources:
        key = load_public_key(spec)
        keys[key_id(key)] = key
    return keys
